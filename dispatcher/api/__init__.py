"""The HTTP API: the blueprints and the whole URL table."""

import re

from flask import Blueprint
from werkzeug.routing import BaseConverter, ValidationError

from .assignments import AssignAPI, AssignmentStatusAPI, ExtendAPI, HistoryAPI, ReleaseAPI
from .auth import AuthAPI, TokenCheckAPI
from .docs import DocsAssetAPI, DocsPageAPI, OpenAPIDocumentAPI
from .health import HealthAPI
from .listings import LISTINGS, CloudAPI, HomeAPI, ListingAPI
from .metrics import MetricsAPI
from .pools import PoolAPI, PoolLevelsAPI, PoolsAPI
from .quotas import MyQuotaAPI, QuotaAPI, QuotasAPI
from .reconcile import ReconcileAPI
from .requests import RequestAPI, RequestsAPI
from .resources import (
    FirewallAPI,
    FirewallRuleAPI,
    VolumeAttachAPI,
    VolumeChangeAPI,
    VolumeCreateAPI,
)
from .usage import UsageAPI
from .vm import NodeAPI, PowerAPI, StartAPI, StopAPI


class ListingConverter(BaseConverter):
    """The ``<listing:action>`` of ``/<action>[/<cloud>]``: any word but the first word of
    another route (``vm``, ``fw``, ...), so that ``GET /vm/stop`` is not taken for the
    listing ``vm`` of cloud ``stop`` but answered as the PUT-only URL it is."""

    _FIRST_WORD = re.compile(r"^/api/v\d+/([^/<]+)")
    # The listings, for the OpenAPI document; any other word is a 400 naming it.
    choices = list(LISTINGS)

    def to_python(self, value: str) -> str:
        if value in self._taken_words():
            raise ValidationError()
        return value

    def _taken_words(self) -> set[str]:
        words = getattr(self, "_words", None)
        if words is None:
            found = (self._FIRST_WORD.match(rule.rule) for rule in self.map.iter_rules())
            words = self._words = {match[1] for match in found if match} - set(LISTINGS)
        return words


bp = Blueprint("api_v1", __name__, url_prefix="/api/v1")
# v2 is the original's template for a next dialect: today the v1 listings.
bp_v2 = Blueprint("api_v2", __name__, url_prefix="/api/v2")


def route(blueprint, view, rule, name, **defaults):
    """Register ``rule`` and ``rule/<cloud>``; without a cloud the view gets None.

    ``defaults`` are more arguments of the view that the rule itself fixes.
    """
    func = view.as_view(name)
    blueprint.add_url_rule(rule, view_func=func, defaults={"cloud": None, **defaults})
    blueprint.add_url_rule(f"{rule}/<cloud>", view_func=func, defaults=defaults)


bp.add_url_rule("/", view_func=HomeAPI.as_view("home"))
bp.add_url_rule("/openapi.json", view_func=OpenAPIDocumentAPI.as_view("openapi"))
bp.add_url_rule("/docs", view_func=DocsPageAPI.as_view("docs"))
bp.add_url_rule("/docs/<path:filename>", view_func=DocsAssetAPI.as_view("docs_asset"))
bp.add_url_rule("/health", view_func=HealthAPI.as_view("health"))
bp.add_url_rule("/auth", view_func=AuthAPI.as_view("auth"))
bp.add_url_rule("/test/start", view_func=TokenCheckAPI.as_view("token_check"))
bp.add_url_rule("/cloud", view_func=CloudAPI.as_view("cloud"))
route(bp, ListingAPI, "/<listing:action>", "listing")
bp.add_url_rule("/nodes/<cloud>/<node_id>", view_func=NodeAPI.as_view("node"))
route(bp, StartAPI, "/vm/start", "vm_start")
route(bp, StopAPI, "/vm/stop", "vm_stop")
route(bp, PowerAPI, "/vm/action/<any(reboot, poweron, poweroff):action>", "vm_power")
route(bp, AssignAPI, "/vm/action/assign", "vm_assign")
route(bp, ReleaseAPI, "/vm/action/release", "vm_release")
route(bp, ExtendAPI, "/vm/action/extend", "vm_extend")
route(bp, AssignmentStatusAPI, "/vm/status", "vm_status")
route(bp, FirewallAPI, "/fw", "fw")
for action in ("open", "close"):
    route(bp, FirewallRuleAPI, f"/fw/{action}", f"fw_{action}", action=action)
route(bp, VolumeCreateAPI, "/storage/create", "storage_create")
route(bp, VolumeAttachAPI, "/storage/attach", "storage_attach")
for action in ("detach", "destroy"):
    route(bp, VolumeChangeAPI, f"/storage/{action}", f"storage_{action}", action=action)
route(bp, HistoryAPI, "/vm/history", "vm_history")
bp.add_url_rule("/pools", view_func=PoolsAPI.as_view("pools"))
bp.add_url_rule("/pools/<name>", view_func=PoolAPI.as_view("pool"))
bp.add_url_rule("/pools/<name>/levels", view_func=PoolLevelsAPI.as_view("pool_levels"))
route(bp, ReconcileAPI, "/reconcile", "reconcile")
bp.add_url_rule("/requests", view_func=RequestsAPI.as_view("requests"))
bp.add_url_rule("/requests/<int:request_id>", view_func=RequestAPI.as_view("request"))
bp.add_url_rule("/usage", view_func=UsageAPI.as_view("usage"))
bp.add_url_rule("/quotas", view_func=QuotasAPI.as_view("quotas"))
bp.add_url_rule("/quotas/me", view_func=MyQuotaAPI.as_view("quota_me"))
bp.add_url_rule(
    "/quotas/default",
    view_func=QuotaAPI.as_view("quota_default"),
    defaults={"scope": "default", "name": None},
)
bp.add_url_rule("/quotas/<any(user, role):scope>/<name>", view_func=QuotaAPI.as_view("quota"))
route(bp_v2, ListingAPI, "/<listing:action>", "listing")


def init_app(app) -> None:
    """Register the API blueprints on ``app``."""
    app.url_map.converters["listing"] = ListingConverter
    app.add_url_rule("/metrics", view_func=MetricsAPI.as_view("metrics"))
    app.register_blueprint(bp)
    app.register_blueprint(bp_v2)
