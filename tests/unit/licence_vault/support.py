"""Sample parties and licence requests for the vault tests (synthetic, valid codes)."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import text

from licence_vault.model import IssueRequest
from licence_vault.types import (
    BIRTH_CERTIFICATE,
    BUSINESS_LICENCE,
    FOOD_BUSINESS_PERMIT,
    HOUSEHOLD_REGISTER,
)
from zhida.auth.mint import DEMO_ORGS
from zhida.blobstore import BlobStore
from zhida.db import Database
from zhida.licence.v1 import licence_vault_service_pb2 as pb

JIANGAN_SAMR = DEMO_ORGS["武汉市江岸区市场监督管理局"]  # issues both restaurant licences
WUHAN_SAMR = DEMO_ORGS["武汉市市场监督管理局"]  # another issuer
PORTAL = DEMO_ORGS["武汉市武昌区政务服务和大数据管理局"]  # the one-stop portal (application)
OTHER_APP = DEMO_ORGS["湖北省公安厅"]
UNSEALED_ISSUER = "11420102000040352C"  # a valid USCC with no seal in the dev deployment
RESTAURANT = "91420102MA4KXY128F"
RESTAURANT_NAME = "武汉市江岸区知味餐饮有限公司"
TRANSPORT_CO = "91420100MA4L0T3K5B"
CITIZEN = "42010219850612301X"
NEWBORN = "420102202401150045"
MOTHER = "420102198809211527"


def business_licence(request_id: str = "bl-1", holder: str = RESTAURANT, **kw: Any) -> IssueRequest:
    data = {
        "统一社会信用代码": holder,
        "名称": RESTAURANT_NAME,
        "类型": "有限责任公司",
        "法定代表人": "张三",
        "注册资本": "50万元人民币",
        "成立日期": "2024-03-01",
        "住所": "武汉市江岸区沿江大道100号",
        "经营范围": "餐饮服务；食品销售",
        "登记机关": "武汉市江岸区市场监督管理局",
    }
    data.update(kw.pop("data", {}))
    return IssueRequest(
        request_id=request_id,
        type_code=BUSINESS_LICENCE.code,
        holder_code=holder,
        holder_name=RESTAURANT_NAME,
        data=data,
        **kw,
    )


def food_permit_draft(
    request_id: str, *, issue_date: str = "", valid_until: str = ""
) -> pb.LicenceDraft:
    """The restaurant's food permit as a wire draft (for tests that issue through a node);
    dates as ISO dates, empty for the defaults."""
    return pb.LicenceDraft(
        request_id=request_id, type_code=FOOD_BUSINESS_PERMIT.code, holder_code=RESTAURANT,
        holder_name=RESTAURANT_NAME,
        data={
            "经营者名称": RESTAURANT_NAME, "社会信用代码": RESTAURANT,
            "法定代表人（负责人）": "张三", "住所": "武汉市江岸区沿江大道100号",
            "经营场所": "武汉市江岸区沿江大道100号1层", "主体业态": "餐饮服务经营者",
            "经营项目": "热食类食品制售", "许可证编号": "JY24201020012345",
        },
        issue_date=issue_date, valid_until=valid_until,
    )  # fmt: skip


def food_permit(request_id: str = "fp-1", holder: str = RESTAURANT, **kw: Any) -> IssueRequest:
    data = {
        "经营者名称": RESTAURANT_NAME,
        "社会信用代码": holder,
        "法定代表人（负责人）": "张三",
        "住所": "武汉市江岸区沿江大道100号",
        "经营场所": "武汉市江岸区沿江大道100号1层",
        "主体业态": "餐饮服务经营者",
        "经营项目": "热食类食品制售；冷食类食品制售",
        "许可证编号": "JY24201020012345",
        "日常监督管理机构": "武汉市江岸区市场监督管理局",
        "投诉举报电话": "12315",
    }
    data.update(kw.pop("data", {}))
    return IssueRequest(
        request_id=request_id,
        type_code=FOOD_BUSINESS_PERMIT.code,
        holder_code=holder,
        holder_name=RESTAURANT_NAME,
        data=data,
        **kw,
    )


def birth_certificate(request_id: str = "bc-1", **kw: Any) -> IssueRequest:
    data = {
        "新生儿姓名": "李小宝",
        "性别": "女",
        "出生日期": "2024-01-15",
        "健康状况": "良好",
        "体重（克）": "3300",
        "身长（厘米）": "50",
        "出生地点": "湖北省武汉市江岸区",
        "母亲姓名": "王芳",
        "母亲身份证件号码": MOTHER,
        "出生证编号": "R420123456",
        "接生机构名称": "武汉市江岸区妇幼保健院",
    }
    data.update(kw.pop("data", {}))
    return IssueRequest(
        request_id=request_id,
        type_code=BIRTH_CERTIFICATE.code,
        holder_code=NEWBORN,
        holder_name="李小宝",
        data=data,
        **kw,
    )


def household_register(request_id: str = "hr-1", holder: str = CITIZEN) -> IssueRequest:
    return IssueRequest(
        request_id=request_id,
        type_code=HOUSEHOLD_REGISTER.code,
        holder_code=holder,
        holder_name="李四",
        data={
            "户主姓名": "李四",
            "户主公民身份号码": holder,
            "户别": "家庭户",
            "户号": "420102001",
            "住址": "武汉市江岸区胜利街1号",
            "户口登记机关": "武汉市公安局江岸区分局",
        },
        valid_from=date(2020, 1, 1),
        issue_date=date(2020, 1, 1),
    )


def tamper_stored_jws(database: Database, licence_id: str) -> None:
    """Alter one character of the JWS the database holds for ``licence_id`` (its issue event)."""
    with database.session() as s:
        record = s.execute(
            text("SELECT record FROM licence_event WHERE licence_id = :id AND action = 'issue'"),
            {"id": licence_id},
        ).scalar_one()
        assert not record.startswith("sha256:"), "this licence keeps its JWS in the blob store"
        i = record.index("e")
        s.execute(
            text(
                "UPDATE licence_event SET record = :r WHERE licence_id = :id AND action = 'issue'"
            ),
            {"r": record[:i] + "f" + record[i + 1 :], "id": licence_id},
        )


def move_jws_to_blobs(database: Database, blobs: BlobStore, licence_id: str) -> str:
    """Make ``licence_id`` look issued before JWS moved into the database: the document in
    the blob store, ``sha256:<digest>`` as its issue event's record. Returns the digest."""
    with database.session() as s:
        record = s.execute(
            text("SELECT record FROM licence_event WHERE licence_id = :id AND action = 'issue'"),
            {"id": licence_id},
        ).scalar_one()
        digest = blobs.put(record.encode("ascii"))
        s.execute(
            text(
                "UPDATE licence_event SET record = :r WHERE licence_id = :id AND action = 'issue'"
            ),
            {"r": f"sha256:{digest}", "id": licence_id},
        )
    return digest
