"""locustfiles/chat.py for a worker that gives up on a silent master after 2 s instead of Locust's 60
(pass --conversations: there is no conversations.yaml beside this file)."""

import locust.runners
from locust import events

from loadtest.plugin import NLXChatUser, register

register(events)
locust.runners.MASTER_HEARTBEAT_TIMEOUT = 2


class ChatUser(NLXChatUser):
    pass
