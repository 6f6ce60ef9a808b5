# The twistd plugin: `twistd chat`. Keep this a bare ServiceMaker: it is
# imported by every plugin scan, so it must not import the reactor or Autobahn.
from twisted.application.service import ServiceMaker

chat = ServiceMaker(
    "twisted-chat",
    "twisted_chat.tap",
    "Real-time chat daemon: line chat, WebSocket and a browser page.",
    "chat",
)
