"""
Socket.IO: Engine.IO protocol v4 (polling and WebSocket transports) and
Socket.IO protocol v5, and the chat client that speaks it.
"""
