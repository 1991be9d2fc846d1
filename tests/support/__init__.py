"""Independent SIP test peers (pjsua2 phone, baresip driver) and audio helpers."""
