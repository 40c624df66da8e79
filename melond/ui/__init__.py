"""The web UI's files (HTML, CSS, JavaScript), served by melond as they are: no build step."""
