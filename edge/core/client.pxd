# Cython declarations for client.py: none. ClientConnection subclasses asyncio.Protocol, so it stays
# a Python class; compiling the module (hatch_build.py) still turns its read path (data_received,
# _parse) and flush into C, and its attribute reads of the parser and outbound buffer stay Python's.
