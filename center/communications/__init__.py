"""Communications with customers: channels, the outbox, consent, templates, the burning chain."""

from __future__ import annotations

from center.communications.campaigns import launch_burning, run_fallback
from center.communications.chains import BurningCampaign, plan_burning, plan_fallback
from center.communications.model import CHANNELS, PURPOSES, STATES, Consent, OutMessage
from center.communications.sender import SendReport, collect_receipts, send_due
from center.communications.store import CommunicationsRepository, NewMessage
from center.communications.templates import Template, parse_template

__all__ = [
    "CHANNELS",
    "PURPOSES",
    "STATES",
    "BurningCampaign",
    "CommunicationsRepository",
    "Consent",
    "NewMessage",
    "OutMessage",
    "SendReport",
    "Template",
    "collect_receipts",
    "launch_burning",
    "parse_template",
    "plan_burning",
    "plan_fallback",
    "run_fallback",
    "send_due",
]
