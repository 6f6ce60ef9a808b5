"""
Tests for twisted_chat.frontends: the line chat, WebSocket, the web page and the write path.
"""
