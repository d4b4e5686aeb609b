"""The member API: customers sign in with a one-time code and see only their own data.

For the portal (call these, never a copy): every service is a method of the repository
`storage.members` (center/members/members_store.py), run on the database thread (`in_db`):
- sign-in: `request_code(parse_address(body), ip, now)` -> challenge; `check_code(challenge_id,
  code, ip, now, consents=..., profile=...)` -> tokens and customer_id (signs up on first code);
  `refresh(refresh_token, ip, now)`; `authenticate(access_token, ip, now)` -> TokenClaims;
  `sign_out(claims, now, everywhere=...)`.
- data, by the signed-in customer id: `balances(cid, now)`, `history(cid, now, limit=)`,
  `offers(cid, now)`, `activate_offer(cid, offer_id, now)`, `receipt(cid, sale_id, now)`,
  `coupons`, `categories` / `set_categories`, `profile` / `update_profile`, `consents` /
  `set_consents`, `cards`, `card_qr(cid, card_no, now)`,
  `stores`, `notifications` / `read_notification` / `notify`, `set_push`, `export_data`,
  `delete_data`; `audit_read(cid, action, detail, now)` for a page that reads through another
  domain's service (every member action is audited);
  receipts list: `storage.customers.customer_receipts(cid, ...)`; tier:
  `storage.tiers.customer_tier(cid, now)`.
The HTTP face is center/members/api.py (`/v1/member/...`, OpenAPI at /v1/member/openapi.json).
"""

from __future__ import annotations

from center.members.members_store import MemberRepository
from center.members.model import DEFAULT_POLICY, Address, MemberPolicy, TokenClaims, parse_address

__all__ = [
    "DEFAULT_POLICY",
    "Address",
    "MemberPolicy",
    "MemberRepository",
    "TokenClaims",
    "parse_address",
]
