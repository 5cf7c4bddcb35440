"""mDNS (zeroconf) adapter: advertise the broker, discover LAN devices, poll their JSON APIs.

The pure modules (matchers, devices, readings, http) import no zeroconf; ``service`` does, and is
imported only when ``[mdns]`` is enabled (via ``runtime``).
"""
