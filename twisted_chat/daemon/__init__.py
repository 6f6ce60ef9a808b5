"""
The C{twistd chat} daemon: options, the service tree of a node or of a
C{--workers} parent, listeners, signals and the operations endpoints.
"""
