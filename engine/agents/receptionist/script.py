"""The receptionist's domain: a fictional dental practice, its intents, what it answers,
and how callers ask. One source for the agent, its pre-rendered prompts, the synthetic
corpus (`talkover data synth`) and `talkover bench intents`.
"""

from __future__ import annotations

from dataclasses import dataclass

BUSINESS = "Harbor Street Dental"

WELCOME = (
    f"Thank you for calling {BUSINESS}. I can tell you our opening hours, where we are, prices and "
    "insurance, or book an appointment. How can I help?"
)


@dataclass(frozen=True)
class Intent:
    name: str
    reply: str  # what the agent says (rendered offline to prompts/<name>.wav)
    phrasings: tuple[str, ...]  # how callers ask: the corpus and the tests speak these
    action: str = ""  # "transfer" | "hangup" after the reply has played


INTENTS: tuple[Intent, ...] = (
    Intent(
        "hours",
        "We are open Monday to Friday from eight in the morning to six in the evening, and on Saturday "
        "from nine to one. We are closed on Sundays.",
        (
            "What are your opening hours?",
            "When are you open?",
            "Are you open on Saturday?",
            "What time do you close today?",
            "Hi, what are your opening hours?",
            "What time do you open in the morning?",
            "Are you open on Sundays?",
            "How late are you open tonight?",
        ),
    ),
    Intent(
        "address",
        "We are at forty two Harbor Street, next to the post office, two minutes' walk from the "
        "Harbor Street bus stop.",
        (
            "Where are you located?",
            "What is your address?",
            "How do I get to your office?",
            "Can you give me directions?",
            "Which street are you on?",
            "Where is the practice?",
            "I need the address of the clinic.",
            "How do I find you?",
        ),
    ),
    Intent(
        "book",
        "I can book that for you. Our next free appointments are Tuesday at ten in the morning and Thursday "
        "at two in the afternoon. We will send you a text message to confirm.",
        (
            "I'd like to book an appointment.",
            "Can I make an appointment for a checkup?",
            "I want to see the dentist next week.",
            "Do you have any free appointments?",
            "I'd like to book an appointment for Tuesday.",
            "Can I schedule a cleaning?",
            "I need to make an appointment please.",
            "Could you fit me in this week?",
        ),
    ),
    Intent(
        "cancel",
        "No problem. We will send you a text message with a link to cancel or move your appointment. "
        "Please let us know a day in advance.",
        (
            "I need to cancel my appointment.",
            "Can I reschedule my appointment?",
            "I want to move my appointment to another day.",
            "I can't make it tomorrow, can I change the time?",
            "Please cancel my booking.",
            "I have to cancel my visit on Friday.",
            "Could I change my appointment?",
            "I'd like to reschedule.",
        ),
    ),
    Intent(
        "prices",
        "A checkup with a cleaning is ninety five dollars. Fillings start at one hundred and twenty dollars, "
        "and whitening is two hundred and fifty.",
        (
            "How much does a checkup cost?",
            "What are your prices?",
            "How much is a cleaning?",
            "What do you charge for a filling?",
            "How expensive is teeth whitening?",
            "Can you tell me the cost of a visit?",
            "What is the price of a checkup?",
            "How much will it cost me?",
        ),
    ),
    Intent(
        "insurance",
        "We accept most dental insurance plans, including Delta Dental, Cigna and Aetna. Please bring your "
        "insurance card to your visit.",
        (
            "Do you take my insurance?",
            "Do you accept Delta Dental?",
            "Which insurance plans do you accept?",
            "Is my dental plan covered?",
            "Do you take Cigna insurance?",
            "Can I use my insurance with you?",
            "Are you in network for Aetna?",
            "Does my insurance cover a cleaning?",
        ),
    ),
    Intent(
        "parking",
        "There is free parking behind the building. The entrance is on Pier Lane, and there are two "
        "spaces for disabled drivers by the door.",
        (
            "Is there parking?",
            "Where can I park?",
            "Do you have a car park?",
            "Is parking free?",
            "Can I park near the office?",
            "Where do I leave my car?",
            "Is there somewhere to park my car?",
            "Do you have parking for disabled drivers?",
        ),
    ),
    Intent(
        "emergency",
        "If you are in severe pain or have broken a tooth, we keep emergency appointments every morning. "
        "Please come in at eight. If your face is swollen and you have trouble breathing, call nine one one.",
        (
            "I have a terrible toothache.",
            "It's an emergency, I broke my tooth.",
            "My tooth is really hurting.",
            "I'm in a lot of pain, can someone see me today?",
            "My face is swollen and my tooth hurts.",
            "I chipped a tooth and it hurts.",
            "This is an emergency.",
            "I need an urgent appointment, I'm in pain.",
        ),
    ),
    Intent(
        "person",
        "Of course. Let me put you through to our front desk. One moment please.",
        (
            "Can I speak to a person please?",
            "I want to talk to someone.",
            "Can I talk to a real person?",
            "Put me through to the front desk.",
            "I'd like to speak to the receptionist.",
            "Let me speak to a human.",
            "Can you transfer me to someone?",
            "Is there anybody I can talk to?",
        ),
        action="transfer",
    ),
    Intent(
        "goodbye",
        f"Thank you for calling {BUSINESS}. Have a nice day. Goodbye.",
        (
            "That's all, thank you. Goodbye.",
            "Thanks, bye.",
            "Goodbye.",
            "That's everything, thanks for your help.",
            "Okay, thank you, bye bye.",
            "No, that's all. Have a good day.",
            "Great, thanks. Bye.",
            "Thank you, that's all I needed.",
        ),
        action="hangup",
    ),
    Intent(
        "repeat",
        "",  # plays the previous answer again
        (
            "Sorry, can you repeat that?",
            "Could you say that again?",
            "What did you say?",
            "Pardon?",
            "Can you repeat that please?",
            "I didn't catch that, say it again.",
            "Sorry, what was that?",
            "Come again?",
        ),
    ),
)

FALLBACK = Intent(
    "fallback",
    "Sorry, I didn't get that. I can help with opening hours, our address, parking, prices, insurance, "
    "booking or cancelling an appointment, emergencies, or I can put you through to a person.",
    (),
)

# General sentences: agent-voice and caller-voice material outside the intents (the corpus's
# "general" part; the fallback intent's test material too).
GENERAL_SENTENCES: tuple[str, ...] = (
    "The weather has been lovely this week.",
    "My neighbour has a very loud dog.",
    "I read a good book about sailing last month.",
    "The train was late again this morning.",
    "We planted tomatoes in the garden.",
    "Could you tell me the football score?",
    "My sister is visiting from Chicago.",
    "The coffee machine in the office is broken.",
    "I am thinking about learning the piano.",
    "The river was very high after the rain.",
    "She painted the kitchen a bright yellow.",
    "Our team won the quiz on Thursday night.",
)

BY_NAME: dict[str, Intent] = {i.name: i for i in (*INTENTS, FALLBACK)}
INTENT_NAMES: tuple[str, ...] = tuple(i.name for i in INTENTS)
