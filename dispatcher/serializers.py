"""Plain, JSON-safe dicts of libcloud objects and ledger rows, each with its shape."""

import datetime
import enum

from .models import ACTIONS, ASSIGNED, STATUS_NAMES
from .shapes import (
    ANY,
    ARRAY,
    INTEGER,
    INTEGER_OR_NULL,
    OBJECT,
    TAGS_OR_NULL,
    TEXT,
    TEXT_OR_NULL,
    describes,
    one_of,
)


def json_safe(value, depth: int = 0):
    """Return ``value`` made of JSON types only; other objects become their id or text.

    Drivers put arbitrary objects in ``extra`` (images, locations, datetimes);
    ``depth`` bounds what a self-referencing object could otherwise recurse into.
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if depth > 8:
        return str(value)
    if isinstance(value, enum.Enum):
        return json_safe(value.value, depth + 1)
    if isinstance(value, dict):
        return {str(key): json_safe(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(item, depth + 1) for item in value]
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "id") and not callable(value.id):
        return {"id": json_safe(value.id, depth + 1), "name": str(getattr(value, "name", ""))}
    return str(value)


@describes("Cloud", {"name": TEXT, "type": TEXT, "host": TEXT_OR_NULL})
def cloud_to_dict(cloud) -> dict:
    """A cloud of the pool as the original listed it: name, engine and host."""
    return {"name": cloud.name, "type": cloud.spec.engine, "host": cloud.spec.host}


def _driver_fields(obj) -> dict:
    return {"provider": str(obj.driver.type), "cloud_type": obj.driver.name}


@describes(
    "Node",
    {
        "name": TEXT_OR_NULL,
        "uuid": TEXT,
        "id": TEXT,
        "provider": TEXT,
        "public_ips": ARRAY,
        "private_ips": ARRAY,
        "cloud_type": TEXT,
        "state": TEXT,
        "extra": OBJECT,
    },
)
def node_to_dict(node) -> dict:
    """NODE: a libcloud ``Node`` as clients of the original receive it."""
    return {
        "name": node.name,
        "uuid": node.uuid,
        "id": str(node.id),
        **_driver_fields(node),
        "public_ips": list(node.public_ips or []),
        "private_ips": list(node.private_ips or []),
        "state": str(node.state),
        "extra": json_safe(node.extra or {}),
    }


@describes("Image", {"id": TEXT, "name": TEXT_OR_NULL, "provider": TEXT, "cloud_type": TEXT})
def image_to_dict(image) -> dict:
    """An image: id, name, provider and cloud type."""
    return {"id": str(image.id), "name": image.name, **_driver_fields(image)}


@describes(
    "Flavor",
    {
        "id": TEXT,
        "name": TEXT_OR_NULL,
        "ram": ANY,
        "cpu": ANY,
        "disk": ANY,
        "provider": TEXT,
        "cloud_type": TEXT,
    },
)
def size_to_dict(size) -> dict:
    """A size (flavor); ``cpu`` is what the provider reports, 0 where it reports nothing."""
    extra = size.extra or {}
    cpu = getattr(size, "vcpus", None) or extra.get("cpu") or extra.get("vcpus") or 0
    return {
        "id": str(size.id),
        "name": size.name,
        "ram": size.ram,
        "cpu": json_safe(cpu),
        "disk": size.disk,
        **_driver_fields(size),
    }


@describes(
    "Volume",
    {
        "id": TEXT,
        "name": TEXT_OR_NULL,
        "size": INTEGER_OR_NULL,
        "state": TEXT,
        "provider": TEXT,
        "cloud_type": TEXT,
        "extra": OBJECT,
    },
)
def volume_to_dict(volume) -> dict:
    """A volume: id, name, size in GB, state, and what else the provider tells."""
    return {
        "id": str(volume.id),
        "name": volume.name,
        "size": volume.size,
        "state": str(getattr(volume, "state", None) or "unknown"),
        **_driver_fields(volume),
        "extra": json_safe(volume.extra or {}),
    }


@describes(
    "Location",
    {
        "id": TEXT,
        "name": TEXT_OR_NULL,
        "country": TEXT_OR_NULL,
        "provider": TEXT,
        "cloud_type": TEXT,
    },
)
def location_to_dict(location) -> dict:
    """A location (region, zone): id, name and country."""
    return {
        "id": str(location.id),
        "name": location.name,
        "country": location.country,
        **_driver_fields(location),
    }


@describes("KeyPair", {"name": TEXT, "fingerprint": TEXT_OR_NULL})
def key_pair_to_dict(key_pair) -> dict:
    """A key pair by name and fingerprint: never its key material."""
    return {"name": key_pair.name, "fingerprint": key_pair.fingerprint}


@describes("Tenant", {"id": TEXT, "name": TEXT_OR_NULL, "provider": TEXT, "cloud_type": TEXT})
def tenant_to_dict(tenant, driver) -> dict:
    """A tenant (OpenStack project): id, name, and the driver it was listed through."""
    return {
        "id": str(tenant.id),
        "name": tenant.name,
        "provider": str(driver.type),
        "cloud_type": driver.name,
    }


@describes(
    "Assignment",
    {
        "id": ANY,
        "id_vm": ANY,
        "hostname": TEXT_OR_NULL,
        "cloud": TEXT_OR_NULL,
        "recipe": TEXT_OR_NULL,
        "recipe_id": ANY,
        "user": TEXT_OR_NULL,
        "status": {**INTEGER, "description": "1 FREE, 2 ASSIGNED, 3 FAULTY"},
        "status_desc": TEXT,
    },
    optional={
        "expires_at": {**TEXT, "description": "a leased VM's end (ISO 8601, UTC)"},
        "tags": {**TAGS_OR_NULL, "description": "the tags of its assignment (local ledger)"},
    },
)
def assignment_to_dict(row) -> dict:
    """ASSIGNMENT: a local ledger row in the shape Cistern answers, with the tags of its
    assignment (None: none); an assigned VM's lease end, if it has one."""
    shown = {
        "id": row.id,
        "id_vm": row.id_vm,
        "hostname": row.hostname,
        "cloud": row.cloud,
        "recipe": row.recipe,
        "recipe_id": None,  # Cistern numbers its recipes; the local ledger names them only
        "user": row.user,
        "status": row.status,
        "status_desc": STATUS_NAMES[row.status],
        "tags": row.tags,
    }
    if row.expires_at is not None and row.status == ASSIGNED:
        shown["expires_at"] = utc_iso(row.expires_at)
    return shown


def as_utc(moment: datetime.datetime | None) -> datetime.datetime | None:
    """A time read from the database, in UTC with its zone: SQLite hands back the UTC it
    stored without one, PostgreSQL with one."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC)


def utc_iso(moment: datetime.datetime | None) -> str | None:
    """A time read from the database as the API shows it: ISO 8601, UTC; None stays None."""
    moment = as_utc(moment)
    return moment.isoformat() if moment is not None else None


@describes(
    "HistoryEntry",
    {
        "id": INTEGER,
        "time": TEXT_OR_NULL,
        "cloud": TEXT,
        "action": one_of(*ACTIONS),
        "id_vm": TEXT_OR_NULL,
        "hostname": TEXT_OR_NULL,
        "caller": TEXT_OR_NULL,
        "user": TEXT_OR_NULL,
        "vm_type": TEXT_OR_NULL,
        "outcome": TEXT,
        "message": TEXT_OR_NULL,
        "request_id": TEXT_OR_NULL,
        "tags": TAGS_OR_NULL,
    },
)
def audit_entry_to_dict(entry) -> dict:
    """One line of the assignment history."""
    return {
        "id": entry.id,
        "time": utc_iso(entry.created_at),
        "cloud": entry.cloud,
        "action": entry.action,
        "id_vm": entry.id_vm,
        "hostname": entry.hostname,
        "caller": entry.caller,
        "user": entry.user,
        "vm_type": entry.vm_type,
        "outcome": entry.outcome,
        "message": entry.message,
        "request_id": entry.request_id,
        "tags": entry.tags,
    }
