"""
twisted-chat: a real-time chat daemon on Twisted.

One L{ChatService} holds rooms, nicknames, presence and history; thin
front-ends (line chat, WebSocket) turn bytes into service calls and service
events into bytes.
"""

from twisted_chat.core.errors import ChatError
from twisted_chat.core.interfaces import IChatClient
from twisted_chat.core.service import ChatService, Member

__version__ = "0.1.0"

__all__ = ["ChatError", "ChatService", "IChatClient", "Member", "__version__"]
