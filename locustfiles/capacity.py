"""Capacity search: the most conversations a deployment holds within its SLO (the --threshold rules).

    locust -f locustfiles/capacity.py --headless --threshold 'ttft.p95<800ms' --threshold 'error_rate<1%' \
        --search-users 10:400                        # concurrent conversations (closed model)
    locust -f locustfiles/capacity.py --headless --threshold 'ttft.p95<800ms' -u 400 \
        --search-rate 0.5:20                         # conversations arriving per second (open model)

Each step runs --step-time (60s), measured after --step-warmup (10s); the load doubles until a step
fails, then bisects down to --search-resolution (5%). See loadtest/capacity.py.
"""

from locust import events

from loadtest.plugin import NLXChatUser, register
from loadtest.search import CapacityShape

register(events)


class ChatUser(NLXChatUser):
    """Picks a scenario from conversations.yaml (by weight) and plays it turn by turn."""

    def wait_time(self) -> float:
        # A rate search is the open model: the arrivals pace the conversations, not the users.
        return 0.0 if self.loadtest.current_settings().search_rate is not None else super().wait_time()


class Search(CapacityShape):
    """Runs the load each step of the search asks for; the run ends with the search."""
