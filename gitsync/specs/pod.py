"""Kubernetes pod settings as a spec writes them: the parts of core/v1 that a kind's
pods need (placement, volumes, security, environment, containers), one vocabulary
for every spec kind that runs pods (ModelDeployment and TrainingRun), so that a field
is spelt, checked and rendered the same way in both.

Types people get wrong in small ways (tolerations, topology spread constraints,
volumes and their everyday sources, volume mounts, ports, security contexts, env
sources) are typed field by field, so a typo is reported at its line with a "did you
mean". The big inner shapes (affinity terms, label selectors, probes, the rarer
volume sources) are mappings whose top-level keys are checked (by the model or by
:func:`kube_keys`) and whose contents go to the API server as written. Typing all of
core/v1 by hand would copy thousands of lines that Kubernetes already checks (every
rendered object passes a server-side dry-run against the real schema in the tests);
checking the top level catches the typos that matter (``nodeAfinity``) without that
copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    Field,
    StringConstraints,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)

from gitsync.specs.common import (
    DNS1123_LABEL,
    DnsLabel,
    QuantityValue,
    Resources,
    StrictModel,
    closest_name,
)

__all__ = [
    "DNS1123_SUBDOMAIN",
    "Affinity",
    "Container",
    "ContainerSecurityContext",
    "Env",
    "EnvSource",
    "EnvValue",
    "LabelSelector",
    "PodSecurityContext",
    "PodSettings",
    "Port",
    "Probe",
    "Toleration",
    "TopologySpreadConstraint",
    "Volume",
    "VolumeMount",
    "kube_keys",
]

DNS1123_SUBDOMAIN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

_Subdomain = Annotated[str, StringConstraints(pattern=DNS1123_SUBDOMAIN, max_length=253)]
_ContainerName = Annotated[str, StringConstraints(pattern=DNS1123_LABEL, max_length=63)]


def kube_keys(
    type_name: str,
    keys: Iterable[str],
    *,
    one_of: Iterable[str] = (),
    required: Iterable[str] = (),
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A check of a Kubernetes type passed through as a mapping: its top-level keys.

    ``one_of``: keys of which exactly one must be given (a volume's source).
    """
    known = frozenset(keys) | frozenset(one_of) | frozenset(required)
    sources = tuple(sorted(one_of))
    needed = tuple(required)

    def check(value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if key not in known:
                hint = closest_name(key, known)
                raise ValueError(
                    f"unknown field {key!r} of a Kubernetes {type_name}"
                    + (f"; did you mean {hint!r}?" if hint else "")
                )
        for key in needed:
            if key not in value:
                raise ValueError(f"a Kubernetes {type_name} needs {key!r}")
        if sources and sum(key in value for key in sources) != 1:
            raise ValueError(f"a Kubernetes {type_name} needs exactly one of {', '.join(sources)}")
        return value

    return check


LabelSelector = Annotated[
    dict[str, Any],
    AfterValidator(kube_keys("LabelSelector", ["matchLabels", "matchExpressions"])),
]
Probe = Annotated[
    dict[str, Any],
    AfterValidator(
        kube_keys(
            "Probe",
            [
                "failureThreshold",
                "initialDelaySeconds",
                "periodSeconds",
                "successThreshold",
                "terminationGracePeriodSeconds",
                "timeoutSeconds",
            ],
            one_of=["exec", "grpc", "httpGet", "tcpSocket"],
        )
    ),
]


class Affinity(StrictModel):
    """core/v1 Affinity; each kind's terms pass through as data."""

    node_affinity: dict[str, Any] | None = None
    pod_affinity: dict[str, Any] | None = None
    pod_anti_affinity: dict[str, Any] | None = None


class PodSecurityContext(StrictModel):
    """core/v1 PodSecurityContext; its nested option objects pass through as data."""

    run_as_user: int | None = Field(default=None, ge=0)
    run_as_group: int | None = Field(default=None, ge=0)
    run_as_non_root: bool | None = None
    fs_group: int | None = Field(default=None, ge=0)
    fs_group_change_policy: Literal["OnRootMismatch", "Always"] | None = None
    supplemental_groups: list[int] | None = None
    supplemental_groups_policy: Literal["Merge", "Strict"] | None = None
    sysctls: list[dict[str, Any]] | None = None
    se_linux_change_policy: Literal["MountOption", "Recursive"] | None = None
    se_linux_options: dict[str, Any] | None = Field(default=None, alias="seLinuxOptions")
    seccomp_profile: dict[str, Any] | None = None
    app_armor_profile: dict[str, Any] | None = None
    windows_options: dict[str, Any] | None = None


class ContainerSecurityContext(StrictModel):
    """core/v1 SecurityContext: a container's."""

    run_as_user: int | None = Field(default=None, ge=0)
    run_as_group: int | None = Field(default=None, ge=0)
    run_as_non_root: bool | None = None
    privileged: bool | None = None
    allow_privilege_escalation: bool | None = None
    read_only_root_filesystem: bool | None = None
    capabilities: dict[str, Any] | None = Field(
        default=None, description="{add: [IPC_LOCK], drop: [ALL]}"
    )
    proc_mount: Literal["Default", "Unmasked"] | None = None
    se_linux_options: dict[str, Any] | None = Field(default=None, alias="seLinuxOptions")
    seccomp_profile: dict[str, Any] | None = None
    app_armor_profile: dict[str, Any] | None = None
    windows_options: dict[str, Any] | None = None


class KeyToPath(StrictModel):
    key: str
    path: str
    mode: int | None = Field(default=None, ge=0, le=0o777)


class PersistentVolumeClaimSource(StrictModel):
    claim_name: DnsLabel | Annotated[str, StringConstraints(max_length=253)]
    read_only: bool | None = None


class SecretSource(StrictModel):
    secret_name: str
    items: list[KeyToPath] | None = None
    default_mode: int | None = Field(default=None, ge=0, le=0o777)
    optional: bool | None = None


class ConfigMapSource(StrictModel):
    name: str
    items: list[KeyToPath] | None = None
    default_mode: int | None = Field(default=None, ge=0, le=0o777)
    optional: bool | None = None


class EmptyDirSource(StrictModel):
    medium: Literal["", "Memory", "HugePages"] | None = None
    size_limit: QuantityValue | None = None


#: In-tree volume plugins Kubernetes has deprecated or removed in favour of CSI
#: drivers: refused here rather than passed on to a cluster that may not have them.
_DEPRECATED_SOURCES = frozenset(
    {
        "awsElasticBlockStore",
        "azureDisk",
        "azureFile",
        "cephfs",
        "cinder",
        "flexVolume",
        "flocker",
        "gcePersistentDisk",
        "gitRepo",
        "glusterfs",
        "photonPersistentDisk",
        "portworxVolume",
        "quobyte",
        "rbd",
        "scaleIO",
        "storageos",
        "vsphereVolume",
    }
)


class Volume(StrictModel):
    """A pod volume: a name and exactly one source. The everyday sources are typed;
    the rest (csi, projected, ephemeral, ...) pass through as the core/v1 data."""

    name: DnsLabel
    persistent_volume_claim: PersistentVolumeClaimSource | None = None
    secret: SecretSource | None = None
    config_map: ConfigMapSource | None = None
    empty_dir: EmptyDirSource | None = None
    host_path: dict[str, Any] | None = None
    nfs: dict[str, Any] | None = None
    csi: dict[str, Any] | None = None
    projected: dict[str, Any] | None = None
    downward_api: dict[str, Any] | None = Field(default=None, alias="downwardAPI")
    ephemeral: dict[str, Any] | None = None
    image: dict[str, Any] | None = None
    iscsi: dict[str, Any] | None = None
    fc: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_deprecated_plugin(cls, data: Any) -> Any:
        if isinstance(data, dict):
            old = sorted(_DEPRECATED_SOURCES & set(data))
            if old:
                raise ValueError(
                    f"volume source {old[0]} is a deprecated in-tree plugin; "
                    "use a persistentVolumeClaim or csi volume"
                )
        return data

    @model_validator(mode="after")
    def _one_source(self) -> Volume:
        given = [
            name
            for name in type(self).model_fields
            if name != "name" and getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                f"volume {self.name} needs exactly one source (e.g. persistentVolumeClaim, "
                f"secret, configMap, emptyDir), not {len(given)}"
            )
        return self


class KeyRef(StrictModel):
    name: _Subdomain
    key: Annotated[str, StringConstraints(min_length=1)]
    optional: bool | None = None


class FieldRef(StrictModel):
    field_path: str
    api_version: str | None = None


class ResourceFieldRef(StrictModel):
    resource: str
    container_name: str | None = None
    divisor: QuantityValue | None = None


class EnvSource(StrictModel):
    """Where a variable's value comes from (Kubernetes' ``valueFrom``): a key of a
    secret or config map, a field of the pod, or a container's resource."""

    secret_key_ref: KeyRef | None = None
    config_map_key_ref: KeyRef | None = None
    field_ref: FieldRef | None = None
    resource_field_ref: ResourceFieldRef | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EnvSource:
        given = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of secretKeyRef, configMapKeyRef, fieldRef or "
                f"resourceFieldRef, not {len(given)}"
            )
        return self


def _env_value(value: object, _handler: ValidatorFunctionWrapHandler) -> str | EnvSource:
    # Chosen by shape rather than tried in turn, so that a mistake is reported once,
    # at the variable, and not once per alternative.
    if isinstance(value, str | EnvSource):
        return value
    if not isinstance(value, dict):
        # A ValueError: pydantic reports it at the field; a TypeError it would not catch.
        raise ValueError(  # noqa: TRY004
            "a value is text (quote numbers and booleans) or where it comes from "
            "({secretKeyRef: ...}, {configMapKeyRef: ...}, {fieldRef: ...} or "
            "{resourceFieldRef: ...})"
        )
    if "valueFrom" in value:
        # Kubernetes' own spelling, which an EnvVar list needs and this map does not.
        raise ValueError(
            "give the source without valueFrom, e.g. NAME: {secretKeyRef: {name: ..., key: ...}}"
        )
    return EnvSource.model_validate(value)


#: A variable's value: the text itself (``LOG_LEVEL: info``), or where it comes from
#: (``HF_TOKEN: {secretKeyRef: {name: hf, key: token}}``), which Kubernetes spells
#: under ``valueFrom``; the map's key is already the name, so no level repeats it.
EnvValue = Annotated[str | EnvSource, WrapValidator(_env_value)]
#: Environment variables by name.
Env = dict[Annotated[str, StringConstraints(min_length=1)], EnvValue]


class Toleration(StrictModel):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class TopologySpreadConstraint(StrictModel):
    max_skew: int = Field(ge=1)
    topology_key: str
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"]
    label_selector: LabelSelector | None = None
    match_label_keys: list[str] | None = None
    min_domains: int | None = Field(default=None, ge=1)
    node_affinity_policy: Literal["Honor", "Ignore"] | None = None
    node_taints_policy: Literal["Honor", "Ignore"] | None = None


class VolumeMount(StrictModel):
    name: DnsLabel
    mount_path: Annotated[str, StringConstraints(pattern=r"^/")]
    read_only: bool | None = None
    sub_path: str | None = None
    sub_path_expr: str | None = None
    mount_propagation: Literal["None", "HostToContainer", "Bidirectional"] | None = None
    recursive_read_only: Literal["Disabled", "IfPossible", "Enabled"] | None = None


class Port(StrictModel):
    container_port: int = Field(ge=1, le=65535)
    name: Annotated[str, StringConstraints(max_length=15)] | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] | None = None


class Container(StrictModel):
    """One container of a custom predictor, transformer or explainer."""

    name: _ContainerName = "kserve-container"
    image: str
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    env: Env = Field(default_factory=dict)
    ports: list[Port] = Field(default_factory=list)
    resources: Resources | None = None
    volume_mounts: list[VolumeMount] = Field(default_factory=list)
    working_dir: str | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    security_context: ContainerSecurityContext | None = None
    readiness_probe: Probe | None = None
    liveness_probe: Probe | None = None
    startup_probe: Probe | None = None


class PodSettings(StrictModel):
    """Where and how a component's pods run; each field is the PodSpec field of the
    same name, and a field left out is left to Kubernetes and KServe."""

    service_account_name: _Subdomain | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    affinity: Affinity | None = None
    priority_class_name: _Subdomain | None = None
    runtime_class_name: _Subdomain | None = None
    image_pull_secrets: list[_Subdomain] = Field(
        default_factory=list, description="Secret names, rendered as [{name: ...}]"
    )
    volumes: list[Volume] = Field(default_factory=list)
    security_context: PodSecurityContext | None = None
    topology_spread_constraints: list[TopologySpreadConstraint] = Field(default_factory=list)
    pod_labels: dict[str, str] = Field(
        default_factory=dict, description="Labels of the component's pods"
    )
    pod_annotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations of the component's pods"
    )
