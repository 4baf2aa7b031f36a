"""Electronic seals: making, verifying, revoking; the seal picture."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import timedelta

import pytest
from PIL import Image, ImageChops

from signing.errors import Failure, FontNotFound, VerificationError
from signing.pki import cert_sha256
from signing.seal import (
    Seal,
    SealPurpose,
    SealRegistry,
    SealRevocations,
    create_seal,
    maker_key_id,
    verify_seal,
)
from signing.seal_image import find_cjk_font, render_seal_image
from tests.unit.signing.conftest import MZJ_USCC, SCJ_NAME, SCJ_USCC, World, make_seal
from zhida.errors import InvalidArgument


def _failure(world: World, seal: Seal, **kw: object) -> Failure:
    args: dict[str, object] = {"at": world.now, "signer_cert": world.scj_cert}
    args.update(kw)
    with pytest.raises(VerificationError) as err:
        verify_seal(seal, world.store.public_key("seal-maker"), **args)  # type: ignore[arg-type]
    return err.value.failure


def test_seal_created_and_verified(world: World) -> None:
    seal = world.seal
    verify_seal(
        seal, world.store.public_key("seal-maker"), at=world.now, signer_cert=world.scj_cert
    )
    assert seal.purpose is SealPurpose.LICENCE
    assert seal.name == f"{SCJ_NAME}电子证照专用章"
    assert seal.owner_uscc == SCJ_USCC
    assert seal.maker_key_id == maker_key_id(world.store.public_key("seal-maker"))
    body = seal.body()
    assert body["header"] == {"id": "ES", "version": 4, "vid": "zhida"}
    assert body["property"]["purpose"] == "05"
    assert body["property"]["certList"] == [cert_sha256(world.scj_cert)]
    again = Seal.from_json(seal.to_json())
    assert again == seal
    verify_seal(
        again, world.store.public_key("seal-maker"), at=world.now, signer_cert=world.scj_cert
    )


def test_seal_used_outside_validity(world: World) -> None:
    assert _failure(world, world.seal, at=world.now - timedelta(days=2)) is Failure.SEAL_EXPIRED
    assert (
        _failure(world, world.seal, at=world.now + timedelta(days=4 * 365)) is Failure.SEAL_EXPIRED
    )


def test_signer_not_bound_to_seal(world: World) -> None:
    assert _failure(world, world.seal, signer_cert=world.mzj_cert) is Failure.SEAL_NOT_BOUND


def test_revoked_seal(world: World) -> None:
    revocations = SealRevocations()
    revocations.revoke(world.seal.seal_id, "印章遗失")
    assert _failure(world, world.seal, revocations=revocations) is Failure.SEAL_REVOKED
    loaded = SealRevocations.from_json(revocations.to_json())
    assert world.seal.seal_id in loaded
    registry = world.registry()
    registry.revocations.revoke(world.seal.seal_id, "印章遗失")
    with pytest.raises(VerificationError) as err:
        registry.check(world.seal.seal_id, at=world.now, signer_hash=world.seal.cert_hashes[0])
    assert err.value.failure is Failure.SEAL_REVOKED


def test_tampered_seal_or_wrong_maker(world: World) -> None:
    tampered = replace(world.seal, valid_until=world.seal.valid_until + timedelta(days=3650))
    assert _failure(world, tampered) is Failure.SEAL_INVALID
    rebound = replace(
        world.seal, cert_hashes=(*world.seal.cert_hashes, world.mzj_seal.cert_hashes[0])
    )
    assert _failure(world, rebound, signer_cert=world.mzj_cert) is Failure.SEAL_INVALID
    with pytest.raises(VerificationError) as err:
        verify_seal(
            world.seal, world.scj_cert.public_key(), at=world.now, signer_cert=world.scj_cert
        )
    assert err.value.failure is Failure.SEAL_INVALID
    with pytest.raises(VerificationError) as err:
        SealRegistry([world.scj_cert.public_key()], seals=[world.seal])
    assert err.value.failure is Failure.SEAL_INVALID
    with pytest.raises(VerificationError) as err:
        Seal.from_json('{"body": {}}')
    assert err.value.failure is Failure.MALFORMED


def test_seal_owner_must_hold_the_certificates(world: World) -> None:
    with pytest.raises(InvalidArgument, match="not the owner"):
        make_seal(world.store, world.mzj_cert, SCJ_NAME, SCJ_USCC, world.now)
    with pytest.raises(InvalidArgument):
        create_seal(
            world.store,
            "seal-maker",
            purpose=SealPurpose.OFFICIAL,
            owner_name="x",
            owner_uscc=MZJ_USCC,
            signer_certificates=[world.mzj_cert],
            valid_from=world.now,
            valid_until=world.now - timedelta(days=1),
        )


def test_seal_image_looks_like_a_seal() -> None:
    png = render_seal_image("武汉市江岸区市场监督管理局", "电子证照专用章", size_px=400)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    assert image.mode == "RGBA"
    assert image.size == (400, 400)
    assert image.getpixel((2, 2))[3] == 0  # type: ignore[index]  # transparent corner
    red, green, blue, alpha = image.getpixel((200, 200))  # type: ignore[misc]  # the star
    assert alpha == 255
    assert (red, green, blue) == (218, 28, 36)
    ring = image.getpixel((200, 12))  # top of the ring
    assert ring[3] > 200  # type: ignore[index]
    dpi = image.info["dpi"]
    assert round(dpi[0]) == round(400 / (42 / 25.4))
    inked = sum(image.getchannel("A").histogram()[129:])
    assert 0.08 < inked / (400 * 400) < 0.45


def _ink(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png)).getchannel("A")


def test_seal_image_draws_the_department_name_along_the_arc() -> None:
    size, purpose = 400, "电子证照专用章"
    name = "武汉市江岸区市场监督管理局"  # 13 characters; the 6th (index 5) is 岸
    ink = _ink(render_seal_image(name, purpose, size_px=size))
    again = _ink(render_seal_image(name, purpose, size_px=size))
    assert ImageChops.difference(ink, again).getbbox() is None  # deterministic
    # one character changed: the picture changes where that character sits, only there
    one = _ink(render_seal_image(name.replace("岸", "汉"), purpose, size_px=size))
    box = ImageChops.difference(ink, one).getbbox()
    assert box is not None
    left, top, right, bottom = box
    centre = size / 2
    # ~19° a character from the top centre (the 7th): the 6th is up, just left of the top
    assert right <= centre + 2
    assert bottom < centre * 0.6
    assert right - left < size * 0.2  # one glyph
    assert bottom - top < size * 0.2
    # another name: the star and the purpose line in the middle stay as they were
    radius = size / 2 * 0.97
    middle = (
        round(centre - 0.35 * radius),
        round(centre - 0.35 * radius),
        round(centre + 0.35 * radius),
        round(centre + 0.7 * radius),
    )
    assert ink.crop(middle).getbbox() is not None  # the star and purpose line are there
    other = _ink(render_seal_image("湖北省民政厅", purpose, size_px=size))
    assert ImageChops.difference(ink, other).getbbox() is not None
    assert ImageChops.difference(ink, other).crop(middle).getbbox() is None


def test_default_seal_picture_is_rendered(world: World) -> None:
    seal = create_seal(
        world.store,
        "seal-maker",
        purpose=SealPurpose.OFFICIAL,
        owner_name=SCJ_NAME,
        owner_uscc=SCJ_USCC,
        signer_certificates=[world.scj_cert],
        valid_from=world.now,
        valid_until=world.now + timedelta(days=1),
    )
    assert seal.picture.data.startswith(b"\x89PNG")
    assert (seal.picture.width_mm, seal.picture.height_mm) == (42, 42)


def test_missing_cjk_font_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZHIDA_CJK_FONT", "/nonexistent/font.ttc")
    with pytest.raises(FontNotFound, match="ZHIDA_CJK_FONT"):
        find_cjk_font.__wrapped__()
    monkeypatch.delenv("ZHIDA_CJK_FONT")
    monkeypatch.setattr("signing.seal_image._from_fc_list", lambda: [])
    monkeypatch.setattr("signing.seal_image._from_known_files", lambda: [])
    with pytest.raises(FontNotFound, match="fonts-wqy-microhei") as err:
        find_cjk_font.__wrapped__()
    assert err.value.reason == "CJK_FONT_MISSING"
