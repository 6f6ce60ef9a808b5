"""
The front-ends: each turns bytes from its clients into calls on the shared
chat service, and the service's events into bytes. The line chat, WebSocket
text and json modes, the browser page, Socket.IO; the write path they share.
"""
