"""The MQTT 3.1.1 listener (``[mqtt]``): connections, sessions and retained messages on disk."""
