"""``zhida token``: mint development tokens and rotate development keys.

Example::

    $ zhida token mint --role department --org 114201000000301708 --region 420100
    eyJhbGciOiJFUzI1NiIsImtpZCI6Ij...
    $ zhida token mint --role admin --org 国家市场监督管理总局 --ttl 600   # a DEMO_ORGS name
    $ zhida token rotate-key --alg EdDSA
    Hk1b0O2Qf3...

Tokens go to stdout alone so they can be captured: ``TOKEN=$(zhida token mint ...)``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zhida.auth.keys import ensure_dev_keys, rotate_dev_key
from zhida.auth.mint import DEMO_ORGS, mint_token
from zhida.auth.principal import Role
from zhida.config import SUPPORTED_JWT_ALGORITHMS, Config, load_config


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = subparsers.add_parser(
        "token",
        help="mint development tokens, rotate development keys",
        description="Development tokens signed with the keys under <data_dir>/keys.",
    )
    actions = token.add_subparsers(dest="token_action", metavar="ACTION", title="actions")
    actions.required = True

    mint = actions.add_parser("mint", help="print a signed bearer token")
    mint.add_argument("--role", required=True, choices=[r.claim for r in Role])
    mint.add_argument(
        "--org",
        required=True,
        metavar="USCC",
        help="unified social credit code of the caller's organisation, or a demo "
        f"department name ({', '.join(DEMO_ORGS)})",
    )
    mint.add_argument("--region", metavar="CODE", help="GB/T 2260 code (default: node.region_code)")
    mint.add_argument("--subject", metavar="S", help="the token's sub (default: the role)")
    mint.add_argument("--ttl", type=int, default=3600, metavar="SECONDS", help="default: 3600")
    mint.add_argument("--kid", help="sign with this key instead of the newest")
    mint.set_defaults(handler=_mint)

    rotate = actions.add_parser(
        "rotate-key", help="add a new development signing key; old tokens stay valid"
    )
    rotate.add_argument("--alg", choices=SUPPORTED_JWT_ALGORITHMS, default="ES256")
    rotate.set_defaults(handler=_rotate_key)


def _config(args: argparse.Namespace) -> Config:
    config = load_config(Path(args.config) if args.config else None)
    ensure_dev_keys(config)
    return config


def _mint(args: argparse.Namespace) -> int:
    config = _config(args)
    token = mint_token(
        config,
        role=Role.from_claim(args.role),
        organisation=DEMO_ORGS.get(args.org, args.org),
        region_code=args.region or config.node.region_code,
        subject=args.subject or args.role,
        ttl_seconds=args.ttl,
        kid=args.kid,
    )
    print(token)
    return 0


def _rotate_key(args: argparse.Namespace) -> int:
    config = _config(args)
    kid = rotate_dev_key(config, args.alg)
    print(kid)
    print(
        f"added {args.alg} key {kid} to {config.auth.jwks_file}; it signs new tokens, "
        "older keys stay published so their tokens remain valid",
        file=sys.stderr,
    )
    return 0
