"""Security: authentication (auth), per-user permissions (permissions) and TLS on the client port (tls).

Imported only when the configuration asks for authentication or TLS, so a plain broker does not load
ssl, bcrypt or nkeys.
"""
