# -*- test-case-name: tests.frontends.socketio.test_socketio,tests.frontends.socketio.test_engineio,tests.e2e.test_e2e_sio -*-
"""
Socket.IO: Engine.IO protocol v4 (polling and WebSocket transports) and
Socket.IO protocol v5, and the chat client that speaks it.

From the bottom up: C{engineio} (the transport: sessions over HTTP
long-polling or a WebSocket, at C{/socket.io/}), C{packets} (Socket.IO's
wire format), C{connection} (a session's namespaces, events and
acknowledgements) and C{chat} (the chat in the main namespace: the only
module here that knows the chat service).
"""
