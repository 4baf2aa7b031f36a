"""Tables behind the sample catalogue: departments with valid USCCs, resource rows, laws cited.

Kept apart from :mod:`catalog_registry.sample_data` (which builds domain
objects from these rows) so the data reads as a table.

Example::

    >>> from catalog_registry.sample_tables import DEPARTMENTS, make_uscc
    >>> DEPARTMENTS["wh-police"].name, make_uscc("420100", 7)
    ('武汉市公安局', '114201000000000784')
"""

from __future__ import annotations

from dataclasses import dataclass

from stdnum.cn import uscc

from catalog_registry.model import ShareType, UpdateCycle

_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
PIPL_28 = (
    "《中华人民共和国个人信息保护法》第二十八条：生物识别、医疗健康、金融账户等"
    "敏感个人信息，只有在具有特定的目的和充分的必要性，并采取严格保护措施的情形下方可处理"
)
GUOFA_2024_3 = (
    "《国务院关于进一步优化政务服务提升行政效能推动“高效办成一件事”的指导意见》(国发〔2024〕3号)"
)
DATA_REGULATION = "《政务数据共享条例》(2025)第十四条"


def org_code_check(body: str) -> str:
    """GB 11714 check character of an 8-character organisation code body."""
    total = sum(int(c, 36) * w for c, w in zip(body, _ORG_WEIGHTS, strict=True))
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def make_uscc(region_code: str, serial: int, *, kind: str = "11") -> str:
    """A valid USCC for a government body (kind 11: 机构编制/机关) in ``region_code``."""
    body = f"{serial:08d}"
    partial = f"{kind}{region_code}{body}{org_code_check(body)}"
    return partial + uscc.calc_check_digit(partial)


@dataclass(frozen=True, slots=True)
class Department:
    key: str
    name: str
    region_code: str
    serial: int

    @property
    def uscc(self) -> str:
        return make_uscc(self.region_code, self.serial)


DEPARTMENTS = {
    d.key: d
    for d in (
        Department("mps", "中华人民共和国公安部", "100000", 13127),
        Department("samr", "国家市场监督管理总局", "100000", 13210),
        Department("mot", "中华人民共和国交通运输部", "100000", 13330),
        Department("hb-hrss", "湖北省人力资源和社会保障厅", "420000", 11001),
        Department("hb-health", "湖北省卫生健康委员会", "420000", 11002),
        Department("hb-nhsa", "湖北省医疗保障局", "420000", 11003),
        Department("hb-transport", "湖北省交通运输厅", "420000", 11004),
        Department("hb-data", "湖北省数据局", "420000", 11005),
        Department("wh-police", "武汉市公安局", "420100", 12001),
        Department("wh-samr", "武汉市市场监督管理局", "420100", 12002),
        Department("wh-fire", "武汉市消防救援支队", "420100", 12003),
        Department("wh-water", "武汉市水务局", "420100", 12004),
        Department("wh-fund", "武汉住房公积金管理中心", "420100", 12005),
        Department("wh-civil", "武汉市民政局", "420100", 12006),
        Department("ja-samr", "武汉市江岸区市场监督管理局", "420102", 13001),
        Department("ja-health", "武汉市江岸区卫生健康局", "420102", 13002),
        Department("ja-gov", "武汉市江岸区政务服务和大数据管理局", "420102", 13003),
        Department("xx-police", "湘西土家族苗族自治州公安局", "433100", 14001),
        Department("xx-samr", "湘西土家族苗族自治州市场监督管理局", "433100", 14002),
        Department("xx-hrss", "湘西土家族苗族自治州人力资源和社会保障局", "433100", 14003),
        Department("xx-transport", "湘西土家族苗族自治州交通运输局", "433100", 14004),
        Department("xx-nhsa", "湘西土家族苗族自治州医疗保障局", "433100", 14005),
        Department("js-samr", "吉首市市场监督管理局", "433101", 15001),
        Department("js-approval", "吉首市行政审批服务局", "433101", 15002),
    )
}

U, C, N = ShareType.UNCONDITIONAL, ShareType.CONDITIONAL, ShareType.NOT_SHARED
CONDITIONS = "经申请审核同意后共享，仅限办理相关政务服务事项使用，须经信息主体授权或具有法定依据"

# code, name, provider, share type, update cycle, items ("名称:类型[!]": ! = not shared)
RESOURCE_ROWS: tuple[tuple[str, str, str, ShareType, UpdateCycle, str], ...] = (
    (
        "1-05-001-0000-000001",
        "出生医学证明信息",
        "hb-health",
        C,
        UpdateCycle.REALTIME,
        "出生医学证明编号:string 新生儿姓名:string 性别:code 出生日期:date 出生地点:string "
        "母亲姓名:string 母亲身份证件号码:string 父亲姓名:string 父亲身份证件号码:string "
        "签发机构:string",
    ),
    (
        "1-01-001-0000-000002",
        "居民户籍登记信息",
        "wh-police",
        C,
        UpdateCycle.DAILY,
        "姓名:string 公民身份号码:string 性别:code 民族:code 出生日期:date 户籍地址:string "
        "户主姓名:string 与户主关系:code 人像照片:binary!",
    ),
    (
        "1-01-002-0000-000003",
        "居民身份证信息",
        "mps",
        C,
        UpdateCycle.DAILY,
        "姓名:string 公民身份号码:string 有效期限:string 签发机关:string",
    ),
    (
        "1-01-003-0000-000004",
        "个人生物识别信息",
        "mps",
        N,
        UpdateCycle.DAILY,
        "公民身份号码:string 人像照片:binary 指纹信息:binary",
    ),
    (
        "2-03-001-0000-000005",
        "社会保障卡信息",
        "hb-hrss",
        U,
        UpdateCycle.DAILY,
        "姓名:string 公民身份号码:string 社会保障号码:string 社会保障卡卡号:string "
        "发卡日期:date 卡状态:code",
    ),
    (
        "2-02-001-0000-000006",
        "城乡居民基本医疗保险参保信息",
        "hb-nhsa",
        C,
        UpdateCycle.DAILY,
        "姓名:string 公民身份号码:string 参保状态:code 参保日期:date 险种类型:code 缴费档次:code",
    ),
    (
        "2-02-002-0000-000007",
        "预防接种证信息",
        "ja-health",
        C,
        UpdateCycle.DAILY,
        "儿童姓名:string 出生日期:date 接种疫苗名称:string 接种日期:date 接种单位:string",
    ),
    (
        "1-02-001-0000-000008",
        "市场主体登记信息(营业执照)",
        "wh-samr",
        U,
        UpdateCycle.REALTIME,
        "统一社会信用代码:string 企业名称:string 法定代表人:string 注册资本:decimal "
        "成立日期:date 经营范围:string 住所:string 登记状态:code",
    ),
    (
        "1-02-001-0000-000009",
        "市场主体登记信息(营业执照)",
        "xx-samr",
        U,
        UpdateCycle.REALTIME,
        "统一社会信用代码:string 企业名称:string 法定代表人:string 注册资本:decimal "
        "成立日期:date 经营范围:string 住所:string 登记状态:code",
    ),
    (
        "2-04-001-0000-000010",
        "食品经营许可信息",
        "ja-samr",
        U,
        UpdateCycle.DAILY,
        "许可证编号:string 经营者名称:string 统一社会信用代码:string 经营场所:string "
        "主体业态:code 经营项目:string 有效期至:date",
    ),
    (
        "2-04-001-0000-000011",
        "食品经营许可信息",
        "js-samr",
        U,
        UpdateCycle.DAILY,
        "许可证编号:string 经营者名称:string 统一社会信用代码:string 经营场所:string "
        "主体业态:code 经营项目:string 有效期至:date",
    ),
    (
        "2-05-001-0000-000012",
        "公众聚集场所投入使用营业前消防安全检查信息",
        "wh-fire",
        C,
        UpdateCycle.DAILY,
        "场所名称:string 场所地址:string 统一社会信用代码:string 检查结论:code "
        "许可文书编号:string 检查日期:date",
    ),
    (
        "3-12-001-0000-000013",
        "城镇污水排入排水管网许可信息",
        "wh-water",
        U,
        UpdateCycle.MONTHLY,
        "许可证编号:string 排水户名称:string 统一社会信用代码:string 排水类别:code 有效期至:date",
    ),
    (
        "2-03-002-0000-000014",
        "职工基本养老保险参保缴费信息",
        "hb-hrss",
        C,
        UpdateCycle.MONTHLY,
        "姓名:string 公民身份号码:string 参保单位名称:string 累计缴费月数:integer "
        "视同缴费年限:integer 缴费基数:decimal",
    ),
    (
        "2-03-003-0000-000015",
        "职工退休审批信息",
        "xx-hrss",
        C,
        UpdateCycle.DAILY,
        "姓名:string 公民身份号码:string 退休类别:code 退休日期:date 审批单位:string",
    ),
    (
        "2-03-004-0000-000016",
        "住房公积金缴存信息",
        "wh-fund",
        C,
        UpdateCycle.MONTHLY,
        "姓名:string 公民身份号码:string 个人账号:string 缴存基数:decimal 账户状态:code "
        "个人银行账号:string!",
    ),
    (
        "2-02-003-0000-000017",
        "医保个人账户信息",
        "xx-nhsa",
        C,
        UpdateCycle.DAILY,
        "姓名:string 公民身份号码:string 账户余额:decimal 参保状态:code",
    ),
    (
        "3-14-001-0000-000018",
        "道路运输经营许可信息",
        "hb-transport",
        U,
        UpdateCycle.DAILY,
        "道路运输经营许可证号:string 业户名称:string 统一社会信用代码:string 经营范围:string "
        "有效期至:date",
    ),
    (
        "3-14-002-0000-000019",
        "道路运输证信息",
        "xx-transport",
        U,
        UpdateCycle.DAILY,
        "道路运输证号:string 车辆号牌:string 业户名称:string 车辆类型:code 有效期至:date",
    ),
    (
        "3-14-001-0000-000025",
        "道路运输经营许可信息",
        "xx-transport",
        U,
        UpdateCycle.DAILY,
        "道路运输经营许可证号:string 业户名称:string 统一社会信用代码:string 经营范围:string "
        "有效期至:date",
    ),
    (
        "3-14-003-0000-000020",
        "道路运输从业人员从业资格证信息",
        "mot",
        U,
        UpdateCycle.DAILY,
        "姓名:string 公民身份号码:string 从业资格证号:string 从业资格类别:code 有效期至:date",
    ),
    (
        "3-11-001-0000-000021",
        "机动车登记信息",
        "xx-police",
        C,
        UpdateCycle.REALTIME,
        "号牌号码:string 车辆识别代号:string 机动车所有人:string 车辆类型:code 注册登记日期:date",
    ),
    (
        "3-11-002-0000-000022",
        "机动车驾驶证信息",
        "mps",
        C,
        UpdateCycle.REALTIME,
        "姓名:string 公民身份号码:string 准驾车型:code 驾驶证状态:code 有效期至:date",
    ),
    (
        "1-02-002-0000-000023",
        "企业年度报告信息",
        "samr",
        U,
        UpdateCycle.YEARLY,
        "统一社会信用代码:string 企业名称:string 报告年度:integer 从业人数:integer "
        "资产总额:decimal",
    ),
    (
        "3-15-001-0000-000024",
        "婚姻登记信息",
        "wh-civil",
        C,
        UpdateCycle.DAILY,
        "男方姓名:string 男方公民身份号码:string 女方姓名:string 女方公民身份号码:string "
        "登记类别:code 登记日期:date 结婚证字号:string",
    ),
)
