"""
End-to-end tests: the installed daemon (twistd chat) as a subprocess on loopback,
driven by real clients.
"""
