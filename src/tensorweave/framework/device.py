"""Device names: ``/job:<name>/replica:<r>/task:<i>/device:<CPU|GPU>:<k>`` parsing and merging."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

_PART = re.compile(r"^(job|replica|task|device|cpu|gpu|CPU|GPU):?(.*)$")


@dataclass(frozen=True)
class DeviceSpec:
    job: str | None = None
    replica: int | None = None
    task: int | None = None
    device_type: str | None = None
    device_index: int | None = None

    @classmethod
    def from_string(cls, spec: str | None) -> DeviceSpec:
        if not spec:
            return cls()
        if isinstance(spec, DeviceSpec):
            return spec
        fields = {}
        for part in spec.strip("/").split("/"):
            if not part:
                continue
            m = _PART.match(part)
            if not m:
                raise ValueError(f"Unknown device specification part {part!r} in {spec!r}; "
                                 "expected e.g. '/job:worker/task:0/device:CPU:0' or '/gpu:0'")
            key, val = m.group(1), m.group(2)
            if key == "job":
                fields["job"] = val
            elif key in ("replica", "task"):
                fields[key] = int(val)
            elif key == "device":
                dtype, _, idx = val.partition(":")
                fields["device_type"] = dtype.upper()
                fields["device_index"] = None if idx in ("", "*") else int(idx)
            else:  # "/cpu:0" and "/gpu:1" shorthands
                fields["device_type"] = key.upper()
                fields["device_index"] = None if val in ("", "*") else int(val)
        return cls(**fields)

    def merge_from(self, other: DeviceSpec) -> DeviceSpec:
        """Fields set in ``other`` override ours (the inner ``tw.device`` wins)."""
        return replace(self, **{k: v for k, v in other.__dict__.items() if v is not None})

    def to_string(self) -> str:
        s = ""
        if self.job is not None:
            s += f"/job:{self.job}"
        if self.replica is not None:
            s += f"/replica:{self.replica}"
        if self.task is not None:
            s += f"/task:{self.task}"
        if self.device_type is not None:
            idx = "*" if self.device_index is None else self.device_index
            s += f"/device:{self.device_type}:{idx}"
        return s

    def __str__(self):
        return self.to_string()


def canonical_name(spec: str | None) -> str:
    return DeviceSpec.from_string(spec).to_string()


def merge_device(outer: str, inner: str) -> str:
    return DeviceSpec.from_string(outer).merge_from(DeviceSpec.from_string(inner)).to_string()
