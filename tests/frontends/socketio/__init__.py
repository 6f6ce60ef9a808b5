"""
Tests for twisted_chat.frontends.socketio: Socket.IO and Engine.IO.
"""
