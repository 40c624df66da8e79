"""Files melond ships beside its code: the systemd unit (melond/service.py prints and installs it)."""
