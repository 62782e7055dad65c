"""Multi-turn chat conversations against an NLX OpenAI Connect endpoint.

    locust -f locustfiles/chat.py                      # web UI, against the built-in mock
    locust -f locustfiles/chat.py --headless -u 20 -t 1m
    NLX_API_KEY=... locust -f locustfiles/chat.py --host https://apps.nlx.ai/v1 \
        --nlx-deployment DEPLOYMENT --nlx-channel CHANNEL-en-US --headless -u 10 -t 5m
"""

from locust import events

from loadtest.plugin import NLXChatUser, register

register(events)


class ChatUser(NLXChatUser):
    """Picks a scenario from conversations.yaml (by weight) and plays it turn by turn."""
