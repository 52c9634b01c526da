"""Read ``template.yaml`` and resolve what the local runtime needs from it.

The local runtime builds its resources from the SAM template itself, so the deployed stack
and the embedded one cannot drift. This module understands the CloudFormation YAML tags,
the intrinsic functions, SAM's ``Globals``, and gives every resource the physical name and
ARN it would have in a stack named ``stack_name`` (names CloudFormation would generate
become ``{stack_name}-{LogicalId}``).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import yaml

DEFAULT_ACCOUNT_ID = "123456789012"


class TemplateError(Exception):
    """The template cannot be read or uses something the local runtime cannot resolve."""


# --------------------------------------------------------------------------- YAML tags


if TYPE_CHECKING:
    _SafeLoader = yaml.SafeLoader
else:  # libyaml's loader when PyYAML was built with it: ten times faster on the template
    _SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _CfnLoader(_SafeLoader):
    """SafeLoader that turns ``!Ref`` / ``!GetAtt`` / ``!Sub`` ... into their long form."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(cast(yaml.MappingNode, node), deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM YAML (or JSON) template into plain dicts."""
    try:
        with path.open(encoding="utf-8") as stream:
            data = yaml.load(stream, Loader=_CfnLoader)  # a SafeLoader subclass
    except (OSError, yaml.YAMLError) as exc:
        raise TemplateError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise TemplateError(f"{path} has no Resources section")
    return data


# ------------------------------------------------------------------ resource shapes


@dataclass(frozen=True)
class TableSpec:
    logical_id: str
    name: str
    arn: str
    key_schema: list[dict[str, str]]
    attribute_definitions: list[dict[str, str]]
    global_secondary_indexes: list[dict[str, Any]]
    local_secondary_indexes: list[dict[str, Any]]
    ttl_attribute: str | None


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    runtime: str
    memory_size: int
    timeout: int
    environment: dict[str, str]


@dataclass(frozen=True)
class StateMachineSpec:
    logical_id: str
    name: str
    arn: str
    definition: str


@dataclass(frozen=True)
class BucketSpec:
    logical_id: str
    name: str
    eventbridge_notifications: bool


@dataclass(frozen=True)
class NamedSpec:
    """A resource that only needs a name locally (an event bus, a topic)."""

    logical_id: str
    name: str
    arn: str


@dataclass(frozen=True)
class StackSpec:
    """Everything the local runtime creates, resolved."""

    stack_name: str
    region: str
    account_id: str
    tables: list[TableSpec] = field(default_factory=list)
    buckets: list[BucketSpec] = field(default_factory=list)
    event_buses: list[NamedSpec] = field(default_factory=list)
    topics: list[NamedSpec] = field(default_factory=list)
    functions: list[FunctionSpec] = field(default_factory=list)
    state_machines: list[StateMachineSpec] = field(default_factory=list)
    layer_dirs: list[Path] = field(default_factory=list)


# ------------------------------------------------------------------------ resolving

_NO_VALUE = object()  # AWS::NoValue: the property or list element disappears
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")

# Properties that name a resource explicitly, by resource type.
_NAME_PROPERTY = {
    "AWS::DynamoDB::Table": "TableName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::Serverless::Function": "FunctionName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Serverless::StateMachine": "Name",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::Events::EventBus": "Name",
    "AWS::Events::Rule": "Name",
    "AWS::SNS::Topic": "TopicName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::Serverless::LayerVersion": "LayerName",
}


class TemplateResolver:
    """Evaluates intrinsic functions against one imaginary stack."""

    def __init__(
        self,
        template: Mapping[str, Any],
        *,
        stack_name: str,
        region: str,
        account_id: str = DEFAULT_ACCOUNT_ID,
        parameters: Mapping[str, str] | None = None,
    ) -> None:
        self.template = template
        self.stack_name = stack_name
        self.region = region
        self.account_id = account_id
        self.resources: dict[str, dict[str, Any]] = dict(template.get("Resources") or {})
        self._parameters = self._parameter_values(parameters or {})
        self._names: dict[str, str] = {}
        self._naming: set[str] = set()

    # -- parameters and conditions

    def _parameter_values(self, overrides: Mapping[str, str]) -> dict[str, Any]:
        declared: dict[str, Any] = dict(self.template.get("Parameters") or {})
        unknown = set(overrides) - set(declared)
        if unknown:
            raise TemplateError(f"unknown template parameters: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, spec in declared.items():
            if name in overrides:
                values[name] = overrides[name]
            elif isinstance(spec, dict) and "Default" in spec:
                values[name] = spec["Default"]
            else:
                raise TemplateError(f"template parameter {name} has no default and no value")
        return values

    def _pseudo(self, name: str) -> Any:
        pseudo: dict[str, Any] = {
            "AWS::StackName": self.stack_name,
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": (
                f"arn:aws:cloudformation:{self.region}:{self.account_id}:"
                f"stack/{self.stack_name}/local"
            ),
            "AWS::NotificationARNs": [],
            "AWS::NoValue": _NO_VALUE,
        }
        if name not in pseudo:
            raise TemplateError(f"unknown pseudo parameter {name}")
        return pseudo[name]

    def condition(self, name: str) -> bool:
        conditions: dict[str, Any] = dict(self.template.get("Conditions") or {})
        if name not in conditions:
            raise TemplateError(f"unknown condition {name}")
        return bool(self.resolve(conditions[name]))

    def resource_enabled(self, logical_id: str) -> bool:
        """False for a resource whose ``Condition`` is false."""
        condition = self.resources[logical_id].get("Condition")
        return True if condition is None else self.condition(str(condition))

    # -- physical names

    def physical_name(self, logical_id: str) -> str:
        """The name the resource has in this stack (explicit, or as CloudFormation makes one)."""
        if logical_id in self._names:
            return self._names[logical_id]
        if logical_id in self._naming:
            raise TemplateError(f"the name of {logical_id} depends on itself")
        resource = self.resources.get(logical_id)
        if resource is None:
            raise TemplateError(f"unknown resource {logical_id}")
        self._naming.add(logical_id)
        try:
            kind = str(resource.get("Type"))
            props = resource.get("Properties") or {}
            explicit = props.get(_NAME_PROPERTY.get(kind, ""))
            if explicit is not None:
                name = str(self.resolve(explicit))
            elif kind == "AWS::S3::Bucket":
                # Bucket names are global and lowercase.
                name = f"{self.stack_name}-{logical_id}-{self.account_id}".lower()[:63]
            else:
                name = f"{self.stack_name}-{logical_id}"
        finally:
            self._naming.discard(logical_id)
        self._names[logical_id] = name
        return name

    def _arn(self, logical_id: str) -> str:
        kind = str(self.resources[logical_id].get("Type"))
        name = self.physical_name(logical_id)
        region, account = self.region, self.account_id
        arns = {
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{region}:{account}:table/{name}",
            "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
            "AWS::Serverless::Function": f"arn:aws:lambda:{region}:{account}:function:{name}",
            "AWS::Lambda::Function": f"arn:aws:lambda:{region}:{account}:function:{name}",
            "AWS::Serverless::StateMachine": (
                f"arn:aws:states:{region}:{account}:stateMachine:{name}"
            ),
            "AWS::StepFunctions::StateMachine": (
                f"arn:aws:states:{region}:{account}:stateMachine:{name}"
            ),
            "AWS::Events::EventBus": f"arn:aws:events:{region}:{account}:event-bus/{name}",
            "AWS::Events::Rule": f"arn:aws:events:{region}:{account}:rule/{name}",
            "AWS::SNS::Topic": f"arn:aws:sns:{region}:{account}:{name}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{region}:{account}:{name}",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{region}:{account}:log-group:{name}:*",
            "AWS::KMS::Key": f"arn:aws:kms:{region}:{account}:key/{self._key_id(logical_id)}",
            "AWS::Serverless::LayerVersion": f"arn:aws:lambda:{region}:{account}:layer:{name}:1",
        }
        return arns.get(kind, f"arn:aws:cloudformation:{region}:{account}:local/{name}")

    def _key_id(self, logical_id: str) -> str:
        # A stable, UUID-shaped id: nothing depends on it locally but its form.
        digits = "".join(f"{ord(c):02x}" for c in logical_id)[:32].ljust(32, "0")
        return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:32]}"

    def ref(self, name: str) -> Any:
        """What ``!Ref name`` evaluates to."""
        if name.startswith("AWS::"):
            return self._pseudo(name)
        if name in self._parameters:
            return self._parameters[name]
        if name not in self.resources:
            raise TemplateError(f"!Ref to unknown name {name}")
        kind = str(self.resources[name].get("Type"))
        if kind in {
            "AWS::Serverless::StateMachine",
            "AWS::StepFunctions::StateMachine",
            "AWS::SNS::Topic",
            "AWS::Serverless::LayerVersion",
        }:
            return self._arn(name)
        if kind == "AWS::KMS::Key":
            return self._key_id(name)
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{self.region}.amazonaws.com/{self.account_id}/{self.physical_name(name)}"
        return self.physical_name(name)

    def get_att(self, logical_id: str, attribute: str) -> Any:
        """What ``!GetAtt logical_id.attribute`` evaluates to."""
        if logical_id not in self.resources:
            raise TemplateError(f"!GetAtt on unknown resource {logical_id}")
        name = self.physical_name(logical_id)
        if attribute == "Arn":
            return self._arn(logical_id)
        known: dict[str, str] = {
            "Name": name,
            "TopicName": name,
            "TopicArn": self._arn(logical_id),
            "QueueName": name,
            "QueueUrl": str(self.ref(logical_id)),
            "KeyId": self._key_id(logical_id),
            "StreamArn": f"{self._arn(logical_id)}/stream/local",
            "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{self.region}.amazonaws.com",
        }
        return known.get(attribute, f"{name}-{attribute}")

    # -- intrinsic functions

    def resolve(self, value: Any) -> Any:
        """Evaluate every intrinsic function inside ``value``."""
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            key, arg = next(iter(value.items()))
            if key == "Ref":
                return self.ref(str(arg))
            if key == "Condition":
                return self.condition(str(arg))
            if key.startswith("Fn::"):
                return self._function(key[4:], arg)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not _NO_VALUE}

    def _function(self, name: str, arg: Any) -> Any:
        if name == "GetAtt":
            parts = arg.split(".", 1) if isinstance(arg, str) else list(arg)
            return self.get_att(str(parts[0]), str(self.resolve(parts[1])))
        if name == "Sub":
            template, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            return self._sub(str(template), {k: self.resolve(v) for k, v in variables.items()})
        if name == "If":
            condition, when_true, when_false = arg
            chosen = when_true if self.condition(str(condition)) else when_false
            return self.resolve(chosen)
        args = self.resolve(arg)
        simple: dict[str, Any] = {
            "Equals": lambda a: a[0] == a[1],
            "Not": lambda a: not a[0],
            "And": all,
            "Or": any,
            "Join": lambda a: str(a[0]).join(str(part) for part in a[1]),
            "Select": lambda a: a[1][int(a[0])],
            "Split": lambda a: str(a[1]).split(str(a[0])),
            "Base64": lambda a: base64.b64encode(str(a).encode()).decode(),
            "GetAZs": lambda _a: [f"{self.region}{zone}" for zone in "abc"],
            "FindInMap": self._find_in_map,
        }
        if name not in simple:
            raise TemplateError(f"Fn::{name} is not supported by the local runtime")
        return simple[name](args)

    def _find_in_map(self, args: list[Any]) -> Any:
        mappings: dict[str, Any] = dict(self.template.get("Mappings") or {})
        try:
            return mappings[str(args[0])][str(args[1])][str(args[2])]
        except (KeyError, IndexError) as exc:
            raise TemplateError(f"Fn::FindInMap {args} has no value") from exc

    def _sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            expression = match.group(1)
            if expression.startswith("!"):
                return "${" + expression[1:] + "}"  # ${!Literal} stays literal
            if expression in variables:
                return str(variables[expression])
            if "." in expression and not expression.startswith("AWS::"):
                resource, _, attribute = expression.partition(".")
                return str(self.get_att(resource, attribute))
            return str(self.ref(expression))

        return _SUB_VARIABLE.sub(replace, text)


# ------------------------------------------------------------------------ the stack


def _with_globals(properties: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's Globals rule: maps merge, lists append, scalars of the resource win."""
    merged: dict[str, Any] = dict(defaults)
    for key, value in properties.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            merged[key] = _with_globals(value, current)
        elif isinstance(current, list) and isinstance(value, list):
            merged[key] = current + value
        else:
            merged[key] = value
    return merged


def _env_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _code_dir(project_root: Path, uri: Any, logical_id: str) -> Path:
    if not isinstance(uri, str):
        raise TemplateError(f"{logical_id}: only a local CodeUri/ContentUri path is supported")
    return (project_root / uri).resolve()


def describe_stack(
    template: Mapping[str, Any],
    project_root: Path,
    *,
    stack_name: str,
    region: str,
    account_id: str = DEFAULT_ACCOUNT_ID,
    parameters: Mapping[str, str] | None = None,
) -> StackSpec:
    """Resolve the resources the local runtime creates from ``template``."""
    resolver = TemplateResolver(
        template,
        stack_name=stack_name,
        region=region,
        account_id=account_id,
        parameters=parameters,
    )
    stack = StackSpec(stack_name=stack_name, region=region, account_id=account_id)
    function_globals: dict[str, Any] = dict((template.get("Globals") or {}).get("Function") or {})

    for logical_id, resource in resolver.resources.items():
        if not resolver.resource_enabled(logical_id):
            continue
        kind = resource.get("Type")
        raw_props: dict[str, Any] = dict(resource.get("Properties") or {})
        if kind == "AWS::DynamoDB::Table":
            stack.tables.append(_table(resolver, logical_id, resolver.resolve(raw_props)))
        elif kind == "AWS::S3::Bucket":
            props = resolver.resolve(raw_props)
            notifications = props.get("NotificationConfiguration") or {}
            bridge = notifications.get("EventBridgeConfiguration") or {}
            stack.buckets.append(
                BucketSpec(
                    logical_id,
                    resolver.physical_name(logical_id),
                    _truthy(bridge.get("EventBridgeEnabled", False)),
                )
            )
        elif kind in {"AWS::Events::EventBus", "AWS::SNS::Topic"}:
            spec = NamedSpec(
                logical_id, resolver.physical_name(logical_id), resolver.get_att(logical_id, "Arn")
            )
            (stack.event_buses if kind == "AWS::Events::EventBus" else stack.topics).append(spec)
        elif kind == "AWS::Serverless::Function":
            props = resolver.resolve(_with_globals(raw_props, function_globals))
            stack.functions.append(_function(resolver, project_root, logical_id, props))
        elif kind == "AWS::Serverless::StateMachine":
            stack.state_machines.append(
                _state_machine(resolver, project_root, logical_id, raw_props)
            )
        elif kind == "AWS::Serverless::LayerVersion":
            content = raw_props.get("ContentUri")
            stack.layer_dirs.append(_code_dir(project_root, content, logical_id))
    return stack


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _table(resolver: TemplateResolver, logical_id: str, props: Mapping[str, Any]) -> TableSpec:
    ttl = props.get("TimeToLiveSpecification") or {}
    return TableSpec(
        logical_id=logical_id,
        name=resolver.physical_name(logical_id),
        arn=str(resolver.get_att(logical_id, "Arn")),
        key_schema=list(props.get("KeySchema") or []),
        attribute_definitions=list(props.get("AttributeDefinitions") or []),
        global_secondary_indexes=list(props.get("GlobalSecondaryIndexes") or []),
        local_secondary_indexes=list(props.get("LocalSecondaryIndexes") or []),
        ttl_attribute=str(ttl["AttributeName"]) if _truthy(ttl.get("Enabled")) else None,
    )


def _function(
    resolver: TemplateResolver, project_root: Path, logical_id: str, props: Mapping[str, Any]
) -> FunctionSpec:
    variables = (props.get("Environment") or {}).get("Variables") or {}
    handler = props.get("Handler")
    if not isinstance(handler, str) or "." not in handler:
        raise TemplateError(f"{logical_id}: Handler must be 'module.function', got {handler!r}")
    return FunctionSpec(
        logical_id=logical_id,
        name=resolver.physical_name(logical_id),
        arn=str(resolver.get_att(logical_id, "Arn")),
        code_dir=_code_dir(project_root, props.get("CodeUri"), logical_id),
        handler=handler,
        runtime=str(props.get("Runtime", "python3.12")),
        memory_size=int(props.get("MemorySize", 128)),
        timeout=int(props.get("Timeout", 3)),
        environment={str(k): _env_string(v) for k, v in variables.items()},
    )


def _state_machine(
    resolver: TemplateResolver, project_root: Path, logical_id: str, raw: Mapping[str, Any]
) -> StateMachineSpec:
    if "DefinitionUri" in raw:
        uri = raw["DefinitionUri"]
        if not isinstance(uri, str):
            raise TemplateError(f"{logical_id}: DefinitionUri must be a local path")
        try:
            definition = (project_root / uri).read_text(encoding="utf-8")
        except OSError as exc:
            raise TemplateError(f"{logical_id}: cannot read {uri}: {exc}") from exc
    elif "Definition" in raw:
        definition = json.dumps(raw["Definition"])
    else:
        raise TemplateError(f"{logical_id}: no Definition or DefinitionUri")
    substitutions = resolver.resolve(raw.get("DefinitionSubstitutions") or {})
    definition = substitute_definition(definition, substitutions, logical_id)
    return StateMachineSpec(
        logical_id=logical_id,
        name=resolver.physical_name(logical_id),
        arn=str(resolver.ref(logical_id)),
        definition=definition,
    )


def substitute_definition(
    definition: str, substitutions: Mapping[str, Any], where: str = "definition"
) -> str:
    """Replace ``${Name}`` placeholders as SAM does; an undefined one is an error."""
    missing: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in substitutions:
            missing.add(name)
            return match.group(0)
        return str(substitutions[name])

    result = _SUB_VARIABLE.sub(replace, definition)
    if missing:
        raise TemplateError(f"{where}: no DefinitionSubstitutions for {', '.join(sorted(missing))}")
    return result


def definition_placeholders(definition: str) -> set[str]:
    """The ``${Name}`` placeholders a state machine definition uses."""
    return set(_SUB_VARIABLE.findall(definition))
