"""Benchmark 3 (issue 4): licence JWS sign/verify against raw ECDSA, and signed PDFs/s.

All in one process on one core, same run, fresh temporary deployment
(``signing.deployment.Deployment`` with dev keys):

* raw sign: cryptography's ``EllipticCurvePrivateKey.sign`` (P-256, SHA-256)
  over a signing input the size of a licence JWS's; zhida sign:
  ``sign_jws`` of a ~1 KiB Chinese licence payload (canonical JSON, header,
  base64url, key store, JOSE signature encoding);
* raw verify: ``EllipticCurvePublicKey.verify`` of DER signatures; zhida
  verify: ``JwsVerifier.verify`` of distinct tokens from one department (the
  chain cached: parse, signature, canonical payload, CRL and seal checks);
* PDF: ``Deployment.issue_licence_pdf`` — render (CJK font subset, table,
  seal picture, QR code) and PAdES B-B sign — documents per second.

Short windows alternate the raw and zhida loops; the ratios are the medians
of the pairwise ratios, the rates medians.
Targets: sign ratio >= 0.7, verify ratio >= 0.7, PDF >= 40 documents/s.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from signing.deployment import Deployment
from signing.jws import JwsVerifier
from signing.pdf_layout import LicenceDocument
from zhida.config import load_config

SECONDS = float(os.environ.get("ZHIDA_BENCH_SECONDS", "3")) / 3
ROUNDS = int(os.environ.get("ZHIDA_BENCH_ROUNDS", "3"))
TARGET_RATIO = 0.7
TARGET_PDFS = 40.0
USCC = "11420102MB1A23456R"
LICENCE: dict[str, Any] = {
    "证照标识": "1.2.156.3005.2.11100000000013127D001.11420102MB1A23456R.00000001.001.K",
    "证照类型": "食品经营许可证",
    "持证主体": "武汉市江岸区某某餐饮有限公司",
    "持证主体代码": "91420102MA4K000000",
    "法定代表人": "张三",
    "住所": "武汉市江岸区解放大道1000号一楼101室",
    "主体业态": "餐饮服务经营者（中型餐馆）",
    "经营项目": ["热食类食品制售", "冷食类食品制售", "自制饮品制售"],
    "颁发日期": "2025-01-02",
    "有效期至": "2030-01-01",
    "发证机关": "武汉市江岸区市场监督管理局",
    "区划": "420102",
}


def _rate(operation: Callable[[int], object], seconds: float) -> float:
    """Operations per second of ``operation(i)`` over about ``seconds``."""
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(20):
            operation(done)
            done += 1
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - start)


def _deployment(directory: str) -> Deployment:
    config = load_config(None, env={"ZHIDA_NODE__DATA_DIR": directory})
    deployment = Deployment.init(config, env={})
    deployment.issue_department_cert("武汉市江岸区市场监督管理局", USCC)
    deployment.create_seal(USCC, valid_days=365)
    return deployment


def run() -> dict[str, Any]:
    import logging

    logging.getLogger("signing").setLevel(logging.ERROR)  # the dev-keys warning
    with tempfile.TemporaryDirectory() as directory:
        deployment = _deployment(directory)
        return _measure(deployment)


def _measure(deployment: Deployment) -> dict[str, Any]:
    token = deployment.sign_licence_jws(USCC, LICENCE)
    signing_input = token.rsplit(".", 1)[0].encode()
    raw_key = ec.generate_private_key(ec.SECP256R1())
    raw_public = raw_key.public_key()
    ecdsa = ec.ECDSA(hashes.SHA256())
    raw_signature = raw_key.sign(signing_input, ecdsa)
    tokens = [deployment.sign_licence_jws(USCC, {**LICENCE, "序号": i}) for i in range(512)]
    verifier = JwsVerifier(deployment.trust_bundle(), deployment.seal_registry())
    for t in tokens[:4]:
        verifier.verify(t)  # warm the chain and header caches

    def document(i: int) -> LicenceDocument:
        return LicenceDocument(
            title="食品经营许可证",
            licence_id=f"JY1420102{i:08d}",
            fields=[(k, v if isinstance(v, str) else "；".join(v)) for k, v in LICENCE.items()],
            issuer_name="武汉市江岸区市场监督管理局",
            issue_date=date(2025, 1, 2),
        )

    pdf = deployment.issue_licence_pdf(USCC, document(0))
    if not deployment.verify(pdf).valid:
        raise RuntimeError("the benchmark PDF does not verify")

    # Many short alternating windows and the median of the pairwise ratios: the
    # machine's load drifts (two shared cores), a raw/zhida pair sees the same.
    rates: dict[str, list[float]] = {k: [] for k in ("raw_sign", "jws_sign", "raw_verify")}
    rates.update(jws_verify=[], pdf=[])
    window = SECONDS / 4
    for _ in range(ROUNDS * 4):
        rates["raw_sign"].append(_rate(lambda i: raw_key.sign(signing_input, ecdsa), window))
        rates["jws_sign"].append(
            _rate(lambda i: deployment.sign_licence_jws(USCC, LICENCE), window)
        )
        rates["raw_verify"].append(
            _rate(lambda i: raw_public.verify(raw_signature, signing_input, ecdsa), window)
        )
        rates["jws_verify"].append(_rate(lambda i: verifier.verify(tokens[i % 512]), window))
    for _ in range(ROUNDS):
        rates["pdf"].append(
            _rate(lambda i: deployment.issue_licence_pdf(USCC, document(i)), SECONDS)
        )
    median = {k: round(statistics.median(v), 1) for k, v in rates.items()}
    pairs = zip(rates["jws_sign"], rates["raw_sign"], strict=True)
    sign_ratio = round(statistics.median(z / r for z, r in pairs), 3)
    pairs = zip(rates["jws_verify"], rates["raw_verify"], strict=True)
    verify_ratio = round(statistics.median(z / r for z, r in pairs), 3)
    met = (
        sign_ratio >= TARGET_RATIO and verify_ratio >= TARGET_RATIO and median["pdf"] >= TARGET_PDFS
    )
    return {
        "name": "signing",
        "figure": (
            f"JWS sign {median['jws_sign']:.0f}/s vs raw {median['raw_sign']:.0f}/s "
            f"(ratio {sign_ratio}); verify {median['jws_verify']:.0f}/s vs raw "
            f"{median['raw_verify']:.0f}/s (ratio {verify_ratio}); "
            f"PDF render+PAdES {median['pdf']:.0f}/s"
        ),
        "target": (
            f"sign ratio >= {TARGET_RATIO}, verify ratio >= {TARGET_RATIO}, "
            f"PDF >= {TARGET_PDFS:.0f}/s"
        ),
        "description": "ES256 licence JWS vs raw ECDSA P-256; licence PDF render + PAdES B-B sign",
        "token_bytes": len(token),
        "pdf_bytes": len(pdf),
        "seconds_per_measure": SECONDS,
        "rounds": ROUNDS,
        "median_per_second": median,
        "runs": rates,
        "sign_ratio": sign_ratio,
        "verify_ratio": verify_ratio,
        "pdf_per_second": median["pdf"],
        "met": met,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2, ensure_ascii=False))
