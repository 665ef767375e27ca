"""Fictional Chinese names for the sample town (no real persons or places intended)."""

from __future__ import annotations

TOWN_NAME = "江畔镇"
TOWN_CODE = "320581101"
COMMUNITY_NAME = "江畔社区"
PARK_NAME = "江畔工业园"
RIVER_NAME = "望虞河"

_FIRST = "永东南新三凤红长金福田沙白湖万华兴龙太丰顺和友联仁义德安泰善庆"
_SECOND = "丰林港桥星凰旗泾民洲鹤塘安港浜圩宅埭渡湾坝"

STREETS = [
    "人民路", "建设路", "长江路", "通港路", "文化路", "工业路", "新华路", "振兴路", "繁荣路", "和平路",
    "学前路", "花园路", "春晖路", "朝阳路", "迎宾路", "富民路", "育才路", "幸福路", "商城路", "健康路",
    "锦绣路", "友谊路", "光明路", "永安路", "青年路", "滨河路", "金沙路", "园林路", "港城路", "东环路",
]
PARK_STREETS = ["纬一路", "纬二路", "纬三路", "纬四路", "纬五路", "纬六路", "经一路", "经二路", "经三路",
                "经四路", "经五路", "经六路", "经七路", "经八路"]
ARTERIALS = ["S338省道", "江海公路", "沿江大道", "苏虞公路", "锡通线", "常浒公路"]


def village_names(n: int) -> list[str]:
    out: list[str] = []
    i = 0
    while len(out) < n:
        a = _FIRST[(i * 7) % len(_FIRST)]
        b = _SECOND[(i * 3 + i // len(_FIRST)) % len(_SECOND)]
        name = f"{a}{b}村"
        if name not in out:
            out.append(name)
        i += 1
    return out


def street_name(i: int, pool: list[str] = STREETS) -> str:
    if i < len(pool):
        return pool[i]
    return f"{pool[i % len(pool)][:-1]}{i // len(pool) + 1}路"
