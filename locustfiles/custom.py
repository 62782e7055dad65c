"""Conversations written in Python: flows that react to what the bot says.

    locust -f locustfiles/custom.py --headless -u 20 -t 1m --mock-options "--bot locustfiles/bot.yaml"
    NLX_API_KEY=... locust -f locustfiles/custom.py --host https://apps.nlx.ai/v1 \
        --nlx-deployment DEPLOYMENT --nlx-channel CHANNEL-en-US --headless -u 10 -t 5m

`locustfiles/bot.yaml` makes the built-in mock ask back as these flows expect ("What is your order
number?" half of the time, "Which city?"). Every turn is measured, checked and reported as a turn of
conversations.yaml is: see README, "Writing conversations in Python".
"""

from locust import events, task

from loadtest.plugin import NLXChatUser, register

register(events)


class ShopUser(NLXChatUser):
    """Asks about an order three times out of four, books a table otherwise."""

    @task(3)
    def order_status(self) -> None:
        with self.conversation("order_status") as chat:
            reply = chat.say("Hi, where is my order?")
            if "order number" in reply.text.lower():
                chat.say(f"It's {self.rng.randint(10000, 99999)}.", expect={"contains": "ships"})
            else:
                chat.say("It's the running shoes I ordered last week.")
            chat.say("Thanks, that's all.", expect={"not_contains": ["sorry", "didn't understand"]})

    @task(1)
    def booking(self) -> None:
        with self.conversation("booking", system="The customer is logged in as a gold member.") as chat:
            reply = chat.say("I'd like to book a table for two tomorrow at 8 pm.")
            if "which city" in reply.text.lower():
                chat.say(self.rng.choice(["Paris", "Lyon", "Berlin"]))
            chat.think(1.0)  # checks the calendar before confirming
            chat.say("Perfect, please confirm the booking.")
