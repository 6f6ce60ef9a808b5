"""
The terminal client, C{twisted-chat}: the line chat or json mode over
WebSocket, with line editing on a terminal and scripting through pipes.
"""
