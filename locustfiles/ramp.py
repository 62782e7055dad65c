"""The chat conversations of chat.py, with users ramped through stages instead of -u/-r/-t.

locust -f locustfiles/ramp.py --headless --stages 1m:10,5m:50,2m:50,1m:0
"""

from locust import events

from loadtest.plugin import NLXChatUser, register
from loadtest.shapes import StagesShape

register(events)


class ChatUser(NLXChatUser):
    """Picks a scenario from conversations.yaml (by weight) and plays it turn by turn."""


class Ramp(StagesShape):
    """Ramps the users as --stages says; the run ends after the last stage."""
