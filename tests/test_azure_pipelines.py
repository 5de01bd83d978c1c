"""Offline checks of the Azure DevOps pipelines in .azure/devops-pipelines/ (no network, no agent).

Every pipeline and template is validated against the Azure Pipelines JSON schema of
microsoft/azure-pipelines-vscode (tests/schemas/, see its README), read the way Azure DevOps reads
YAML: every scalar a string, task names and enum values case-insensitive, task inputs by alias,
duplicate keys and anchors rejected. Then what the schema cannot know: the Databricks CLI is
pinned to the version of our bundle schema, credentials only come from variable groups as `$(...)`
macros, every command a pipeline runs is a README command, every bundle target exists, and each
stage or job runs in exactly the case it is meant for.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import shlex
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator, ValidationError, validators
from jsonschema.exceptions import best_match

TESTS_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = TESTS_DIR.parent
PIPELINES_DIR = PROJECT_ROOT / ".azure" / "devops-pipelines"
TEMPLATES_DIR = PIPELINES_DIR / "templates"
CICD_PIPELINE = PIPELINES_DIR / "ac-mlops-pipeline-bundle-cicd.yml"
TESTS_PIPELINE = PIPELINES_DIR / "ac-mlops-pipeline-tests.yml"
VARIABLES_TEMPLATE = TEMPLATES_DIR / "variables.yml"
CLI_INSTALL_TEMPLATE = TEMPLATES_DIR / "install-databricks-cli.yml"
SCHEMA_PATH = TESTS_DIR / "schemas" / "azure-pipelines.schema.json"
SCHEMAS_README = TESTS_DIR / "schemas" / "README.md"
README = PROJECT_ROOT / "README.md"
MAKEFILE = PROJECT_ROOT / "Makefile"
BUNDLE_ROOT = PROJECT_ROOT / "databricks.yml"
RESOURCES_DIR = PROJECT_ROOT / "resources"

PIPELINE_FILES = sorted(PIPELINES_DIR.glob("*.yml"))
TEMPLATE_FILES = sorted(TEMPLATES_DIR.glob("*.yml"))
ALL_FILES = [*PIPELINE_FILES, *TEMPLATE_FILES]

AUTH_ENV = ("DATABRICKS_HOST", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET")
# bundle variables without a default for shared targets -> the `$(...)` macro each step maps them from:
# the groups from the variable group; the principal prod's jobs run as from the identity that deploys
# (one owner of jobs and registered models, whose aliases only the owner may move)
BUNDLE_VAR_ENV = {
    "BUNDLE_VAR_service_principal_id": "$(DATABRICKS_CLIENT_ID)",
    "BUNDLE_VAR_readers_group": "$(BUNDLE_VAR_readers_group)",
    "BUNDLE_VAR_ml_engineers_group": "$(BUNDLE_VAR_ml_engineers_group)",
}
SHARED_TARGETS = {"staging", "prod", "test"}
VARIABLE_GROUP = "ac-mlops-pipeline-{target}"
# the nightly chain: one job of the test target, which runs every pair served there
TEST_TARGET_JOBS = ("clv_nightly_test_job",)

# `$(var)` macros, `${{ }}` template expressions, `$[ ]` runtime expressions and README `<placeholders>`
PLACEHOLDER = re.compile(r"\$\([A-Za-z_][\w.\-]*\)|\$\{\{.*?\}\}|\$\[.*?\]|<[A-Za-z_][\w\-]*>")
VALUE = "__value__"
MACRO = re.compile(r"^\$\([A-Za-z_][\w.\-]*\)$")
SECRET_LIKE = re.compile(
    r"\bdapi[0-9a-f]{16,}\b|https://[^\s\"']*\.(cloud\.databricks\.com|azuredatabricks\.net|gcp\.databricks\.com)"
)
# keys whose value must be a `$(...)` macro, never a literal, wherever they appear
CREDENTIAL_KEY = re.compile(r"^DATABRICKS_|TOKEN|SECRET|PASSWORD", re.IGNORECASE)
INSTALL_URL = re.compile(r"databricks/setup-cli/(?P<ref>[^/\s\"']+)/install\.sh")
PINNED_INSTALL_REF = "v$(databricksCliVersion)"
TRUE_VALUES = {"true", "y", "yes", "on"}


def _rel(path: Path) -> str:
    return path.relative_to(PROJECT_ROOT).as_posix()


# YAML as Azure DevOps reads it --------------------------------------------------------------------


class AzureYamlLoader(yaml.BaseLoader):
    """BaseLoader (every scalar a string) that also rejects duplicate keys, as Azure DevOps does."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        duplicates = sorted({key for key in keys if keys.count(key) > 1})
        if duplicates:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key(s) {duplicates}", node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _parse_pipeline_yaml(text: str, where: str) -> Any:
    """Azure DevOps rejects YAML anchors and aliases ("Anchors are not supported"), so do we."""
    for event in yaml.parse(text, Loader=AzureYamlLoader):
        if getattr(event, "anchor", None) is not None:
            raise ValueError(
                f"{where}: YAML anchor/alias &{event.anchor} at {event.start_mark}: not supported by Azure DevOps"
            )
    doc = yaml.load(text, Loader=AzureYamlLoader)
    return "" if doc is None else doc


def _load_pipeline(path: Path) -> Any:
    return _parse_pipeline_yaml(path.read_text(encoding="utf-8"), _rel(path))


# the schema, with the extension's own keywords -------------------------------------------------------

# The schema's task-name list has PublishCodeCoverageResults@2 but its per-task branches lack the
# @2 inputs, so any use of the current (non-deprecated) task fails. This adds the inputs as
# documented at https://learn.microsoft.com/azure/devops/pipelines/tasks/reference/publish-code-coverage-results-v2
# (summaryFileLocation required; pathToSources; failIfCoverageEmpty). Remove it once the
# upstream schema has the branch (test_schema_supplement_is_still_needed says when).
SUPPLEMENTED_TASKS: list[dict] = [
    {
        "properties": {
            "task": {"ignoreCase": "value", "pattern": "^PublishCodeCoverageResults@2$"},
            "inputs": {
                "properties": {
                    "summaryFileLocation": {"type": "string", "ignoreCase": "key"},
                    "pathToSources": {"type": "string", "ignoreCase": "key"},
                    "failIfCoverageEmpty": {"type": "boolean", "ignoreCase": "key"},
                },
                "additionalProperties": False,
                "required": ["summaryFileLocation"],
            },
        },
        "required": ["task", "inputs"],
    }
]


def _read_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def _task_branches(schema: dict) -> list[dict]:
    return schema["definitions"]["task"]["anyOf"]


def _branch_task_name(branch: dict) -> str:
    return branch["properties"]["task"]["pattern"].strip("^$")


def _add_aliases(node: Any) -> None:
    """Task inputs may be spelt by an alias (`testRunner` for `testResultsFormat`): accept both."""
    if isinstance(node, dict):
        properties = node.get("properties")
        if isinstance(properties, dict):
            required, alternatives = node.get("required", []), []
            for name, sub in list(properties.items()):
                aliases = sub.get("aliases", []) if isinstance(sub, dict) else []
                for alias in aliases:
                    properties.setdefault(alias, sub)
                if aliases and name in required:
                    alternatives.append({"anyOf": [{"required": [n]} for n in [name, *aliases]]})
            if alternatives:
                node["required"] = [r for r in required if not properties.get(r, {}).get("aliases")]
                node.setdefault("allOf", []).extend(alternatives)
        for value in list(node.values()):
            _add_aliases(value)
    elif isinstance(node, list):
        for value in node:
            _add_aliases(value)


def _ignores_case(schema: dict) -> bool:
    return schema.get("ignoreCase") in ("value", "all")


def _pattern(validator, pattern, instance, schema):
    """`"ignoreCase": "value"` makes task names and enums case-insensitive in Azure DevOps."""
    if not isinstance(instance, str):
        return
    ignore_case = _ignores_case(schema)
    if not re.search(pattern, instance, re.IGNORECASE if ignore_case else 0):
        yield ValidationError(f"{instance!r} does not match {pattern!r}{' (ignoring case)' if ignore_case else ''}")


def _enum(validator, enums, instance, schema):
    if _ignores_case(schema) and isinstance(instance, str):
        if instance.lower() not in [value.lower() for value in enums if isinstance(value, str)]:
            yield ValidationError(f"{instance!r} is not one of {enums!r} (ignoring case)")
    else:
        yield from Draft7Validator.VALIDATORS["enum"](validator, enums, instance, schema)


_BOOLEAN_STRINGS = TRUE_VALUES | {"false", "n", "no", "off"}
# Azure DevOps reads every scalar as a string: "true" is a boolean input, "30" an integer
AZURE_TYPES = Draft7Validator.TYPE_CHECKER.redefine_many(
    {
        "boolean": lambda checker, i: isinstance(i, bool) or (isinstance(i, str) and i.lower() in _BOOLEAN_STRINGS),
        "integer": lambda checker, i: (
            (isinstance(i, int) and not isinstance(i, bool))
            or (isinstance(i, str) and re.fullmatch(r"-?\d+", i) is not None)
        ),
    }
)
AzurePipelinesValidator = validators.extend(
    Draft7Validator, {"pattern": _pattern, "enum": _enum}, type_checker=AZURE_TYPES
)


@pytest.fixture(scope="module")
def azure_schema() -> dict:
    """The 1.6 MB schema plus aliases and the supplemented tasks, built once for the module."""
    schema = _read_schema()
    _add_aliases(schema)
    _task_branches(schema).extend(copy.deepcopy(SUPPLEMENTED_TASKS))
    Draft7Validator.check_schema(schema)
    return schema


def _template_kind(doc: dict) -> str:
    """The schema's root only describes pipelines; a template is checked against its own definition."""
    kinds = [kind for kind in ("stages", "jobs", "steps", "variables") if kind in doc]
    assert len(kinds) == 1, f"a template defines exactly one of stages/jobs/steps/variables, found {kinds}"
    return f"{kinds[0]}Template"


def _validator_for(schema: dict, path: Path, doc: Any, kind: str | None = None) -> Draft7Validator:
    """The root schema for a pipeline; for a template, its kind's definition (given, or from its keys)."""
    if path.parent == TEMPLATES_DIR:
        schema = dict(schema, oneOf=[{"$ref": f"#/definitions/{kind or _template_kind(doc)}"}])
    return AzurePipelinesValidator(schema)


def _most_specific(error: ValidationError) -> ValidationError:
    """Descend through anyOf/oneOf into the branch that got furthest, down to the leaf reason.

    Azure's schema is anyOf all the way down (a step is one of 260 task shapes), so jsonschema's
    best_match stops at "not valid under any of the given schemas" on the whole step. The branch
    whose errors lie deepest is the one the author meant (the task whose name matched); among
    equals, the one with fewest errors.
    """
    while error.context:
        branches: dict[Any, list[ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        depth = len(error.absolute_path)

        def score(errs: list[ValidationError], depth: int = depth) -> tuple[bool, int, int]:
            # a branch whose own keys (task name, step kind) matched beats one that failed on them
            keys_match = not any(
                e.validator in ("pattern", "enum", "const") and len(e.absolute_path) == depth + 1 for e in errs
            )
            return keys_match, min(len(e.absolute_path) for e in errs), -len(errs)

        error = max(max(branches.values(), key=score), key=lambda e: len(e.absolute_path))
    return error


def _error_path(errors: list[ValidationError]) -> str:
    return _most_specific(best_match(errors)).json_path


def _describe(errors: list[ValidationError], where: str) -> str:
    """The leaf reason and best_match's own view: Azure's anyOf messages alone say only "not valid"."""
    error, leaf = best_match(errors), _most_specific(best_match(errors))
    return (
        f"{where}: {len(errors)} schema error(s); most specific: {leaf.json_path} -> {leaf.message[:300]}\n"
        f"  (best_match: {error.json_path} -> {error.message[:200]})"
    )


def _schema_errors(schema: dict, path: Path, doc: Any, kind: str | None = None) -> list[ValidationError]:
    return list(_validator_for(schema, path, doc, kind).iter_errors(doc))


# walking pipelines: jobs, steps (templates inlined), commands ----------------------------------------


def _items(value: Any) -> list:
    return value if isinstance(value, list) else []


def _jobs(doc: dict) -> Iterator[tuple[dict | None, dict]]:
    """(stage or None, job) for every job of a pipeline with or without stages."""
    for stage in _items(doc.get("stages")):
        for job in _items(stage.get("jobs")):
            yield stage, job
    for job in _items(doc.get("jobs")):
        yield None, job


def _job_name(job: dict) -> str:
    return job.get("job") or job.get("deployment") or "?"


def _steps(job: dict, base: Path = PIPELINES_DIR) -> list[dict]:
    """A job's steps in order, step templates inlined (they are resolved relative to the including file)."""
    steps = []
    for step in _items(job.get("steps")):
        if "template" in step:
            template = (base / step["template"]).resolve()
            steps.extend(_steps(_load_pipeline(template), template.parent))
        else:
            steps.append(step)
    return steps


def _script(step: dict) -> str | None:
    for key in ("script", "bash", "pwsh", "powershell"):
        if key in step:
            return step[key]
    if str(step.get("task", "")).split("@")[0].lower() in {"bash", "cmdline", "powershell"}:
        return (step.get("inputs") or {}).get("script")
    return None


def _shell_commands(script: str, strict: bool = True) -> list[list[str]]:
    """Simple commands of a shell script, split on ; && || | and with placeholders made one value.

    strict=False is for README prose, where an apostrophe in a code span is no shell syntax error.
    """
    commands: list[list[str]] = []
    for line in re.sub(r"\\\n", " ", script).splitlines():
        lexer = shlex.shlex(PLACEHOLDER.sub(VALUE, line), posix=True, punctuation_chars=True)
        lexer.whitespace_split, lexer.commenters = True, "#"
        current: list[str] = []
        try:
            tokens = iter(list(lexer))
        except ValueError:
            if strict:
                raise
            tokens = iter(PLACEHOLDER.sub(VALUE, line).split())
        for token in tokens:
            if token and set(token) <= set("();|&<>"):
                if "<" in token or ">" in token:
                    next(tokens, None)  # a redirection and its file
                    continue
                commands.append(current)
                current = []
            else:
                current.append(token)
        commands.append(current)
    return [command for command in commands if command]


# options that take the next word as their value, per tool
VALUE_OPTIONS = {
    "make": {"-C", "-f", "--file", "--directory", "-j", "-o", "-W"},
    "databricks": {"-t", "--target", "-p", "--profile", "--var", "--params", "-o", "--output"},
    "pytest": {"-m", "-k", "-p", "-c", "-o", "--rootdir", "--basetemp", "--junitxml", "--cov-report", "-n"},
}
OPTION_SPELLING = {"-t": "--target", "-p": "--profile", "-o": "--output"}


def _split_options(tool: str, words: list[str]) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """(positional words, option names, NAME=value assignments); option values dropped."""
    positionals, options, assignments = [], [], []
    words_iter = iter(words)
    for word in words_iter:
        if word.startswith("-"):
            name = word.split("=", 1)[0]
            options.append(OPTION_SPELLING.get(name, name) if tool == "databricks" else name)
            if "=" not in word and name in VALUE_OPTIONS[tool]:
                next(words_iter, None)
        elif tool == "make" and re.match(r"^[A-Za-z_][\w]*=", word):
            assignments.append(tuple(word.split("=", 1)))
        else:
            positionals.append(word)
    return positionals, sorted(set(options)), assignments


def _normalise(command: list[str]) -> tuple[str, list[str]] | None:
    """(tool, arguments) for the commands the README must document: make, databricks bundle, pytest."""
    while command and re.match(r"^[A-Za-z_]\w*=", command[0]):  # VAR=value prefixes
        command = command[1:]
    if not command:
        return None
    head = os.path.basename(command[0])
    if head == "make":
        return "make", command[1:]
    if head == "databricks" and command[1:2] == ["bundle"]:
        return "databricks", command[2:]
    if head == "pytest":
        return "pytest", command[1:]
    if re.fullmatch(r"python[\d.]*", head) and command[1:3] == ["-m", "pytest"]:
        return "pytest", command[3:]
    return None


def _signature(command: list[str]) -> str | None:
    """A command with its values abstracted: `make bundle-deploy TARGET=…`, `databricks bundle deploy --target`.

    The make target, the bundle sub-command, the names of options and make variables and the
    pytest paths must match the README; values (targets, job keys, result paths) may differ.
    """
    normalised = _normalise(command)
    if normalised is None:
        return None
    tool, words = normalised
    positionals, options, assignments = _split_options(tool, words)
    if tool == "make":
        return " ".join(["make", *positionals, *sorted(f"{name}=…" for name, _ in assignments), *options])
    if tool == "databricks":
        subcommand, arguments = (positionals[0], positionals[1:]) if positionals else ("", [])
        return " ".join(["databricks bundle", subcommand, *["…"] * len(arguments), *options])
    return " ".join(["pytest", *positionals, *options])


def _make_dry_run(make_args: list[str]) -> tuple[int, str, str]:
    """What a `make ...` step would run, from make itself (`--dry-run` executes nothing).

    Asking make rather than parsing the Makefile means variables, prerequisites and `$(error)`
    checks behave exactly as on the agent.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"TARGET", "JOB", "PARAMS", "PYTEST_ARGS", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"}
    }
    result = subprocess.run(
        ["make", "--dry-run", "--no-print-directory", "-C", str(PROJECT_ROOT), *make_args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    return result.returncode, result.stdout, result.stderr


def _bundle_command_targets(words: list[str]) -> list[str]:
    """The `-t` / `--target` values of one `databricks bundle` command."""
    targets = [value for flag, value in zip(words, words[1:]) if flag in ("-t", "--target")]
    return targets + [w.split("=", 1)[1] for w in words if w.startswith(("-t=", "--target="))]


class StepCommands:
    """The commands one script step runs: its own, and those behind each `make` it calls."""

    def __init__(self, step: dict) -> None:
        self.step = step
        self.direct = _shell_commands(_script(step) or "")
        self.expanded: list[list[str]] = []
        self.make_errors: list[str] = []
        for command in self.direct:
            normalised = _normalise(command)
            if normalised and normalised[0] == "make":
                returncode, output, errors = _make_dry_run(normalised[1])
                if returncode:
                    self.make_errors.append(f"{shlex.join(command)}: {errors.strip()[-300:]}")
                self.expanded.extend(_shell_commands(output))
            else:
                self.expanded.append(command)

    def bundle_commands(self) -> list[list[str]]:
        """The words after `databricks bundle` of every bundle command the step runs."""
        normalised = [_normalise(command) for command in self.expanded]
        return [words for tool, words in filter(None, normalised) if tool == "databricks"]

    def bundle_targets(self) -> list[str]:
        return [target for words in self.bundle_commands() for target in _bundle_command_targets(words)]

    def make_variables(self) -> dict[str, str]:
        variables = {}
        for command in self.direct:
            normalised = _normalise(command)
            if normalised and normalised[0] == "make":
                variables.update(_split_options("make", normalised[1])[2])
        return variables

    def make_targets(self) -> list[str]:
        targets = []
        for command in self.direct:
            normalised = _normalise(command)
            if normalised and normalised[0] == "make":
                targets += _split_options("make", normalised[1])[0]
        return targets


_STEP_COMMANDS: dict[int, StepCommands] = {}


def _commands(step: dict) -> StepCommands:
    """Cached per step object: make --dry-run is cheap but runs once per step, not once per test."""
    key = id(step)
    if key not in _STEP_COMMANDS:
        _STEP_COMMANDS[key] = StepCommands(step)
    return _STEP_COMMANDS[key]


@pytest.fixture(scope="module")
def pipelines() -> dict[Path, Any]:
    return {path: _load_pipeline(path) for path in PIPELINE_FILES}


def _script_steps(pipelines: dict[Path, Any]) -> Iterator[tuple[Path, dict | None, dict, dict]]:
    """(pipeline, stage, job, step) for every script step, templates inlined."""
    for path, doc in pipelines.items():
        for stage, job in _jobs(doc):
            for step in _steps(job):
                if _script(step) is not None:
                    yield path, stage, job, step


def _where(path: Path, job: dict, step: dict) -> str:
    return f"{_rel(path)} job {_job_name(job)} step {step.get('displayName') or _script(step)[:60]!r}"


def _readme_signatures() -> set[str]:
    """Every make / databricks bundle / pytest command shown in README.md, code blocks and inline code."""
    text = README.read_text(encoding="utf-8")
    snippets = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.DOTALL)
    snippets += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.DOTALL))
    signatures = set()
    for snippet in snippets:
        for command in _shell_commands(snippet, strict=False):
            signature = _signature(command)
            if signature:
                signatures.add(signature)
    return signatures


def _bundle_targets() -> set[str]:
    return set(yaml.safe_load(BUNDLE_ROOT.read_text(encoding="utf-8"))["targets"])


def _bundle_jobs(target: str) -> dict[str, dict]:
    """The jobs a target deploys: every file's `resources.jobs`, and the jobs its `targets.<target>` adds."""
    jobs: dict[str, dict] = {}
    for path in sorted(RESOURCES_DIR.glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        jobs.update((doc.get("resources") or {}).get("jobs") or {})
        for key, job in (
            (((doc.get("targets") or {}).get(target) or {}).get("resources") or {}).get("jobs") or {}
        ).items():
            jobs[key] = {**jobs.get(key, {}), **job}
    return jobs


def _bundle_schema_cli_version() -> str:
    """The CLI version tests/schemas/README.md records for databricks-bundle.schema.json."""
    match = re.search(r"`databricks/cli`.*?tag \*\*v(\d+\.\d+\.\d+)\*\*", SCHEMAS_README.read_text(encoding="utf-8"))
    assert match, f"{_rel(SCHEMAS_README)} does not record the databricks/cli tag of the bundle schema"
    return match.group(1)


def _pipeline_variables(doc: Any) -> dict[str, str]:
    """name -> value of every variable a file defines, in mapping or list form."""
    variables = doc.get("variables") if isinstance(doc, dict) else None
    if isinstance(variables, dict):
        return dict(variables)
    return {item["name"]: item.get("value", "") for item in _items(variables) if "name" in item}


def _variable_definitions(node: Any) -> Iterator[tuple[str, str]]:
    """(name, value) of every variable defined anywhere in a file: pipeline, stage or job level."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "variables":
                yield from _pipeline_variables(node).items()
            else:
                yield from _variable_definitions(value)
    elif isinstance(node, list):
        for value in node:
            yield from _variable_definitions(value)


def _shared_variables() -> dict[str, str]:
    return _pipeline_variables(_load_pipeline(VARIABLES_TEMPLATE))


def _resolve(value: str) -> str:
    return re.sub(r"\$\(([\w.]+)\)", lambda m: _shared_variables().get(m.group(1), m.group(0)), value)


def _groups(stage: dict | None, job: dict) -> set[str]:
    scopes = [job, *([stage] if stage else [])]
    return {item["group"] for scope in scopes for item in _items(scope.get("variables")) if "group" in item}


# (a) schema validation ---------------------------------------------------------------------------


def test_pipelines_and_templates_exist() -> None:
    assert {CICD_PIPELINE, TESTS_PIPELINE} <= set(PIPELINE_FILES)
    assert {CLI_INSTALL_TEMPLATE, VARIABLES_TEMPLATE} <= set(TEMPLATE_FILES)


@pytest.mark.parametrize("path", ALL_FILES, ids=_rel)
def test_file_matches_schema(azure_schema: dict, path: Path) -> None:
    doc = _load_pipeline(path)
    errors = _schema_errors(azure_schema, path, doc)
    assert not errors, _describe(errors, _rel(path))


@pytest.mark.parametrize("path", ALL_FILES, ids=_rel)
def test_file_uses_no_deprecated_task(path: Path) -> None:
    """The schema still accepts deprecated tasks (e.g. PublishCodeCoverageResults@1); we do not."""
    deprecated = {_branch_task_name(b).lower() for b in _task_branches(_read_schema()) if "deprecationMessage" in b}
    assert "publishcodecoverageresults@1" in deprecated
    doc = _load_pipeline(path)
    steps = [s for _, job in _jobs(doc) for s in _items(job.get("steps"))] + _items(doc.get("steps"))
    used = [s["task"] for s in steps if "task" in s and s["task"].lower() in deprecated]
    assert not used, f"{_rel(path)} uses deprecated task(s) {used}"


@pytest.mark.parametrize("path", PIPELINE_FILES, ids=_rel)
def test_template_references_resolve(path: Path) -> None:
    """A missing or wrong-kind template fails only when Azure DevOps compiles the run."""
    doc = _load_pipeline(path)
    references = [
        ("variablesTemplate", item["template"]) for item in _items(doc.get("variables")) if "template" in item
    ]
    for _, job in _jobs(doc):
        references += [("variablesTemplate", i["template"]) for i in _items(job.get("variables")) if "template" in i]
        references += [("stepsTemplate", s["template"]) for s in _items(job.get("steps")) if "template" in s]
    assert references, f"{_rel(path)} uses no template"
    for kind, reference in references:
        template = (path.parent / reference).resolve()
        assert template in TEMPLATE_FILES, f"{_rel(path)}: template {reference} is not a file in {_rel(TEMPLATES_DIR)}"
        assert _template_kind(_load_pipeline(template)) == kind, f"{_rel(path)}: {reference} used as a {kind}"


def test_every_template_is_used(pipelines: dict[Path, Any]) -> None:
    used = {
        (path.parent / m).resolve()
        for path in pipelines
        for m in re.findall(r"template:\s*(\S+)", path.read_text(encoding="utf-8"))
    }
    unused = [_rel(t) for t in TEMPLATE_FILES if t not in used]
    assert not unused, f"templates no pipeline uses: {unused}"


# (b) the validation has teeth ------------------------------------------------------------------------


def _first_step(doc: dict, task_prefix: str) -> dict:
    return next(
        s for _, job in _jobs(doc) for s in _items(job.get("steps")) if s.get("task", "").startswith(task_prefix)
    )


def _break_task_name(doc: dict) -> None:
    _first_step(doc, "UsePythonVersion")["task"] = "UsePythonVersions@0"


def _break_task_version(doc: dict) -> None:
    _first_step(doc, "PublishTestResults")["task"] = "PublishTestResults@9"


def _break_step_key(doc: dict) -> None:
    step = _first_step(doc, "UsePythonVersion")
    step["dispalyName"] = step.pop("displayName")


def _break_task_input(doc: dict) -> None:
    inputs = _first_step(doc, "UsePythonVersion")["inputs"]
    inputs["versionSpc"] = inputs.pop("versionSpec")


def _break_enum_input(doc: dict) -> None:
    _first_step(doc, "PublishTestResults")["inputs"]["testResultsFormat"] = "JUnitXml"


def _break_supplemented_input(doc: dict) -> None:
    inputs = _first_step(doc, "PublishCodeCoverageResults")["inputs"]
    inputs["summaryFileLocations"] = inputs.pop("summaryFileLocation")


def _break_trigger_shape(doc: dict) -> None:
    doc["trigger"] = {"branches": {"include": "main"}}  # include takes a list


def _break_trigger_key(doc: dict) -> None:
    doc["trigger"]["branchez"] = doc["trigger"].pop("branches")


def _break_pr_shape(doc: dict) -> None:
    doc["pr"] = {"branches": ["main"]}  # branches takes include/exclude


def _break_stage_condition_key(doc: dict) -> None:
    doc["stages"][0]["conditon"] = doc["stages"][0].pop("condition")


def _break_env_shape(doc: dict) -> None:
    step = next(s for _, job in _jobs(doc) for s in _items(job.get("steps")) if "env" in s)
    step["env"] = [f"{k}={v}" for k, v in step["env"].items()]  # env is a mapping


@pytest.mark.parametrize(
    "break_it, bad_path",
    [
        (_break_task_name, "$.stages[0].jobs[0].steps[1]"),
        (_break_task_version, "$.stages[0].jobs[0].steps[3]"),
        (_break_step_key, "$.stages[0].jobs[0].steps[1]"),
        (_break_task_input, "$.stages[0].jobs[0].steps[1].inputs"),
        (_break_enum_input, "$.stages[0].jobs[0].steps[3].inputs.testResultsFormat"),
        (_break_supplemented_input, "$.stages[0].jobs[0].steps[4].inputs"),
        (_break_trigger_shape, "$.trigger"),
        (_break_trigger_key, "$.trigger"),
        (_break_pr_shape, "$.pr"),
        (_break_stage_condition_key, "$.stages[0]"),
        (_break_env_shape, "$.stages[0].jobs[0].steps[2].env"),
    ],
    ids=lambda value: value.__name__.removeprefix("_break_") if callable(value) else None,
)
def test_broken_pipeline_is_rejected_at_the_right_path(
    azure_schema: dict, break_it: Callable[[dict], None], bad_path: str
) -> None:
    doc = copy.deepcopy(_load_pipeline(CICD_PIPELINE))
    assert not _schema_errors(azure_schema, CICD_PIPELINE, doc), "the unchanged copy must be valid"
    break_it(doc)
    errors = _schema_errors(azure_schema, CICD_PIPELINE, doc)
    assert errors, f"{break_it.__name__}: the schema accepted a broken pipeline"
    assert _error_path(errors).startswith(bad_path), _describe(errors, break_it.__name__)


def test_broken_schedule_is_rejected(azure_schema: dict) -> None:
    doc = copy.deepcopy(_load_pipeline(TESTS_PIPELINE))
    doc["schedules"][0]["always"] = "maybe"
    errors = _schema_errors(azure_schema, TESTS_PIPELINE, doc)
    assert errors and _error_path(errors).startswith("$.schedules[0].always"), _describe(errors, "always: maybe")


@pytest.mark.parametrize(
    "template, break_it, bad_path",
    [
        (CLI_INSTALL_TEMPLATE, lambda doc: doc.update(stepz=doc.pop("steps")), "$"),
        (CLI_INSTALL_TEMPLATE, lambda doc: doc["steps"][0].update(scirpt=doc["steps"][0].pop("script")), "$.steps[0]"),
        (VARIABLES_TEMPLATE, lambda doc: doc["variables"].append({"nam": "x", "value": "y"}), "$.variables"),
    ],
    ids=["steps_key", "script_key", "variable_item"],
)
def test_broken_template_is_rejected(azure_schema: dict, template: Path, break_it: Callable, bad_path: str) -> None:
    doc = copy.deepcopy(_load_pipeline(template))
    kind = _template_kind(doc)
    break_it(doc)
    errors = _schema_errors(azure_schema, template, doc, kind)
    assert errors, f"the schema accepted a broken {_rel(template)}"
    assert _error_path(errors).startswith(bad_path), _describe(errors, _rel(template))


def test_case_and_aliases_are_read_as_azure_devops_reads_them(azure_schema: dict) -> None:
    """Azure DevOps accepts `usepythonversion@0`, `architecture: X64` and input aliases; so must we."""
    doc = copy.deepcopy(_load_pipeline(CICD_PIPELINE))
    python = _first_step(doc, "UsePythonVersion")
    python["task"] = "usepythonversion@0"
    python["inputs"]["architecture"] = "X64"
    publish = _first_step(doc, "PublishTestResults")
    publish["inputs"]["testRunner"] = publish["inputs"].pop("testResultsFormat")  # documented alias
    errors = _schema_errors(azure_schema, CICD_PIPELINE, doc)
    assert not errors, _describe(errors, "case and aliases")
    # plain JSON Schema (same schema and types, without ignoreCase and aliases) rejects exactly these
    schema = _read_schema()
    _task_branches(schema).extend(copy.deepcopy(SUPPLEMENTED_TASKS))
    plain = validators.extend(Draft7Validator, type_checker=AZURE_TYPES)(schema)
    assert not list(plain.iter_errors(_load_pipeline(CICD_PIPELINE)))
    assert list(plain.iter_errors(doc))


def test_schema_supplement_is_still_needed() -> None:
    """Once upstream describes PublishCodeCoverageResults@2 itself, drop SUPPLEMENTED_TASKS."""
    upstream = {_branch_task_name(branch) for branch in _task_branches(_read_schema())}
    names = {_branch_task_name(branch) for branch in SUPPLEMENTED_TASKS}
    assert not names & upstream, (
        f"the upstream schema now describes {names & upstream}: remove them from SUPPLEMENTED_TASKS"
    )
    task_names = json.dumps(_read_schema()["definitions"]["task"]["properties"]["task"])
    assert all(name in task_names for name in names), "a supplemented task is not even a known task name"


@pytest.mark.parametrize(
    "text, reason",
    [
        ("steps:\n  - script: make unit\n    script: make test\n", "duplicate key"),
        ("variables:\n  a: &v x\n  b: *v\n", "anchor"),
    ],
    ids=["duplicate_key", "anchor"],
)
def test_yaml_that_azure_devops_rejects_is_rejected(text: str, reason: str) -> None:
    with pytest.raises((yaml.YAMLError, ValueError), match=reason):
        _parse_pipeline_yaml(text, "inline")


# (c) the Databricks CLI is pinned to the bundle schema's version ----------------------------------


def test_cli_version_is_defined_once_and_equals_the_bundle_schema_version() -> None:
    definitions = [
        (path, value)
        for path in ALL_FILES
        for name, value in _variable_definitions(_load_pipeline(path))
        if name == "databricksCliVersion"
    ]
    assert [path for path, _ in definitions] == [VARIABLES_TEMPLATE], f"databricksCliVersion defined in {definitions}"
    version = definitions[0][1]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"databricksCliVersion {version!r} is not an exact version"
    assert version == _bundle_schema_cli_version(), (
        f"pipelines install CLI {version} but the bundle schema is from {_bundle_schema_cli_version()}: "
        "regenerate tests/schemas/databricks-bundle.schema.json or change the pin"
    )


@pytest.mark.parametrize("path", ALL_FILES, ids=_rel)
def test_cli_install_urls_are_pinned(path: Path) -> None:
    refs = [m.group("ref") for m in INSTALL_URL.finditer(path.read_text(encoding="utf-8"))]
    allowed = {PINNED_INSTALL_REF, f"v{_bundle_schema_cli_version()}"}
    bad = [ref for ref in refs if ref not in allowed]
    assert not bad, f"{_rel(path)}: setup-cli install refs {bad}; use {PINNED_INSTALL_REF} (never main/latest)"


def test_cli_is_installed_only_through_the_template(pipelines: dict[Path, Any]) -> None:
    """One install step, checked once: pipelines include the template rather than a copy."""
    assert INSTALL_URL.search(CLI_INSTALL_TEMPLATE.read_text(encoding="utf-8"))
    for path in PIPELINE_FILES:
        assert not INSTALL_URL.search(path.read_text(encoding="utf-8")), f"{_rel(path)} installs the CLI itself"
    script = _script(_load_pipeline(CLI_INSTALL_TEMPLATE)["steps"][0])
    assert "databricks -v" in script and "$(databricksCliVersion)" in script.split("databricks -v", 1)[1], (
        "the install step must fail when the installed CLI is not the pinned version"
    )


def test_pipelines_using_the_cli_include_the_version_variable(pipelines: dict[Path, Any]) -> None:
    for path, doc in pipelines.items():
        if any(s.get("template") for _, job in _jobs(doc) for s in _items(job.get("steps"))):
            templates = [
                (path.parent / i["template"]).resolve() for i in _items(doc.get("variables")) if "template" in i
            ]
            assert VARIABLES_TEMPLATE in templates, (
                f"{_rel(path)} installs the CLI but does not include {_rel(VARIABLES_TEMPLATE)}"
            )


def test_readme_documents_the_pinned_cli_install() -> None:
    url = f"https://raw.githubusercontent.com/databricks/setup-cli/v{_bundle_schema_cli_version()}/install.sh"
    assert url in README.read_text(encoding="utf-8"), f"README.md must show the pinned install command with {url}"


# (c) no credentials in YAML ------------------------------------------------------------------------


def _credential_assignments(node: Any, path: str = "$") -> Iterator[tuple[str, str, Any]]:
    """(json path, key, value) of every credential-like key, as a mapping key or a {name, value} variable."""
    if isinstance(node, dict):
        if "name" in node and "value" in node and CREDENTIAL_KEY.search(str(node["name"])):
            yield path, node["name"], node["value"]
        for key, value in node.items():
            if CREDENTIAL_KEY.search(str(key)):
                yield f"{path}.{key}", key, value
            yield from _credential_assignments(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _credential_assignments(value, f"{path}[{index}]")


@pytest.mark.parametrize("path", ALL_FILES, ids=_rel)
def test_no_secret_literals(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    match = SECRET_LIKE.search(text)
    assert match is None, f"{_rel(path)} contains a workspace URL or token: {match.group(0)!r}"
    literals = [
        (where, key)
        for where, key, value in _credential_assignments(_load_pipeline(path))
        if not (isinstance(value, str) and MACRO.match(value))
    ]
    assert not literals, f"{_rel(path)}: credentials must be `$(...)` macros from a variable group: {literals}"


def test_secret_check_has_teeth() -> None:
    doc = {
        "steps": [
            {
                "script": "make bundle-deploy TARGET=prod",
                "env": {"DATABRICKS_HOST": "$(DATABRICKS_HOST)", "DATABRICKS_CLIENT_SECRET": "s3cret"},
            }
        ],
        "variables": [{"name": "DATABRICKS_TOKEN", "value": "abc"}],
    }
    found = {key for _, key, value in _credential_assignments(doc) if not MACRO.match(value)}
    assert found == {"DATABRICKS_CLIENT_SECRET", "DATABRICKS_TOKEN"}
    assert SECRET_LIKE.search("host: https://adb-123.4.azuredatabricks.net") and SECRET_LIKE.search("dapi" + "0" * 32)


# (c) every command is a README command, every target and job exists ----------------------------


def test_command_signatures_abstract_values_only() -> None:
    """The comparison is strict on what a command does and blind to the values it is given."""

    def sig(text: str) -> str | None:
        return _signature(_shell_commands(text)[0])

    assert sig('make unit PYTEST_ARGS="--junitxml=$(Common.TestResultsDirectory)/j.xml"') == sig(
        'make unit PYTEST_ARGS="-q"'
    )
    assert (
        sig("make bundle-deploy TARGET=staging")
        == sig("make bundle-deploy TARGET=<target>")
        == "make bundle-deploy TARGET=…"
    )
    assert sig("databricks bundle run -t test clv_monitoring_job --params a=1") == sig(
        "databricks bundle run --target <target> <job> --params model=repurchase"
    )
    assert sig("make unit") != sig('make unit PYTEST_ARGS="-q"')
    assert sig("make bundle-deploy TARGET=prod") != sig("make bundle-validate TARGET=prod")
    assert sig("databricks bundle deploy -t prod") != sig("databricks bundle deploy -t prod --force-lock")
    assert sig("python -m pytest tests") == sig("pytest tests") != sig("pytest integration_tests")
    assert sig("curl -fsSL https://example.invalid | sh") is None
    assert [c[0] for c in _shell_commands("set -e\nmake a && databricks -v | grep x > /dev/null; make b")] == [
        "set",
        "make",
        "databricks",
        "grep",
        "make",
    ]
    assert _shell_commands("it's prose", strict=False) == [["it's", "prose"]]


def test_script_steps_run_commands(pipelines: dict[Path, Any]) -> None:
    steps = list(_script_steps(pipelines))
    assert steps and all(_commands(step).direct for *_, step in steps)


def test_every_pipeline_command_is_a_readme_command(pipelines: dict[Path, Any]) -> None:
    """The pipelines run the README's commands, not copies that drift from it."""
    documented = _readme_signatures()
    missing = {}
    for path, _, job, step in _script_steps(pipelines):
        commands = _commands(step)
        # the step's own commands, and the databricks bundle commands its make targets run
        shown = [c for c in commands.direct if _signature(c)]
        shown += [c for c in commands.expanded if (_normalise(c) or ("",))[0] == "databricks"]
        for command in shown:
            if _signature(command) not in documented:
                missing.setdefault(_signature(command), _where(path, job, step))
    assert not missing, "commands the pipelines run that README.md does not show (signature: first use):\n" + "\n".join(
        f"  {signature}    ({where})" for signature, where in sorted(missing.items())
    )


def test_make_targets_exist_and_get_their_variables(pipelines: dict[Path, Any]) -> None:
    errors = [error for *_, step in _script_steps(pipelines) for error in _commands(step).make_errors]
    assert not errors, "make --dry-run fails for:\n" + "\n".join(errors)


def test_bundle_make_targets_need_no_virtualenv() -> None:
    """The deploy jobs install only the CLI: bundle targets must not pull in the venv stamp."""
    rules = dict(re.findall(r"^(bundle-[\w-]+):(.*)$", MAKEFILE.read_text(encoding="utf-8"), flags=re.MULTILINE))
    assert set(rules) == {"bundle-validate", "bundle-deploy", "bundle-run"}
    assert all(not prerequisites.strip() for prerequisites in rules.values()), rules


def test_bundle_commands_name_existing_targets(pipelines: dict[Path, Any]) -> None:
    """Every bundle command names its target (no silent fallback to dev), and the target exists."""
    targets = _bundle_targets()
    used = set()
    for path, _, job, step in _script_steps(pipelines):
        for words in _commands(step).bundle_commands():
            named = _bundle_command_targets(words)
            assert len(named) == 1, f"{_where(path, job, step)}: `databricks bundle {shlex.join(words)}` needs one -t"
            assert named[0] in targets, (
                f"{_where(path, job, step)}: target {named[0]!r} not in databricks.yml {sorted(targets)}"
            )
            used.add(named[0])
    assert used == SHARED_TARGETS, f"the pipelines deploy to {sorted(used)}"


def test_bundle_steps_authenticate_from_the_variable_group(pipelines: dict[Path, Any]) -> None:
    """OAuth M2M from `$(...)` macros (secrets reach a script only through env), group named after the target."""
    bundle_steps = [
        (path, stage, job, step)
        for path, stage, job, step in _script_steps(pipelines)
        if _commands(step).bundle_commands()
    ]
    # CI/CD: validate staging and prod, deploy staging, deploy prod; tests: deploy test, run the nightly chain
    assert len(bundle_steps) == 6
    for path, stage, job, step in bundle_steps:
        where, env = _where(path, job, step), step.get("env") or {}
        for name in AUTH_ENV:
            assert MACRO.match(env.get(name, "")), f"{where}: env {name} must be mapped from a $(...) macro"
        assert "DATABRICKS_TOKEN" not in env, f"{where}: a PAT next to OAuth M2M credentials makes auth ambiguous"
        targets = set(_commands(step).bundle_targets())
        if targets & SHARED_TARGETS:
            for name, macro in BUNDLE_VAR_ENV.items():
                assert env.get(name) == macro, f"{where}: env {name} must be `{macro}`"
        assert _groups(stage, job) == {VARIABLE_GROUP.format(target=t) for t in targets}, (
            f"{where}: runs against {targets} with variable groups {_groups(stage, job)}"
        )


def test_cli_is_installed_before_bundle_steps(pipelines: dict[Path, Any]) -> None:
    for path, doc in pipelines.items():
        for _, job in _jobs(doc):
            steps = _steps(job)
            bundle = [i for i, s in enumerate(steps) if _script(s) is not None and _commands(s).bundle_commands()]
            if bundle:
                install = [i for i, s in enumerate(steps) if INSTALL_URL.search(_script(s) or "")]
                assert install and install[0] < bundle[0], (
                    f"{_rel(path)} job {_job_name(job)}: no CLI install before bundle steps"
                )


def test_jobs_use_python_and_java_as_pinned(pipelines: dict[Path, Any]) -> None:
    """Python 3.11 before any make step; the tests' PySpark gets Java 17 through JAVA_HOME."""
    checked = 0
    for path, doc in pipelines.items():
        for _, job in _jobs(doc):
            steps = _steps(job)
            make_steps = [i for i, s in enumerate(steps) if _script(s) is not None and _commands(s).make_targets()]
            if not make_steps:
                continue
            python = [i for i, s in enumerate(steps) if s.get("task", "").lower() == "usepythonversion@0"]
            assert python and python[0] < make_steps[0], f"{_rel(path)} job {_job_name(job)}: UsePythonVersion@0 first"
            assert _resolve(steps[python[0]]["inputs"]["versionSpec"]) == "3.11"
            for i in make_steps:
                if {"unit", "integration", "test"} & set(_commands(steps[i]).make_targets()):
                    assert (steps[i].get("env") or {}).get("JAVA_HOME") == "$(JAVA_HOME_17_X64)", _where(
                        path, job, steps[i]
                    )
                    checked += 1
    assert checked >= 3


def _test_steps_and_publishing(job: dict) -> tuple[list[dict], dict | None, dict | None]:
    steps = _steps(job)
    tests = [s for s in steps if _script(s) is not None and {"unit", "integration"} & set(_commands(s).make_targets())]
    junit = next((s for s in steps if s.get("task") == "PublishTestResults@2"), None)
    coverage = next((s for s in steps if s.get("task") == "PublishCodeCoverageResults@2"), None)
    return tests, junit, coverage


def test_test_results_and_coverage_are_published(pipelines: dict[Path, Any]) -> None:
    """Every JUnit and Cobertura file pytest writes is picked up, even when the tests fail."""
    jobs_with_tests = 0
    for path, doc in pipelines.items():
        for _, job in _jobs(doc):
            tests, junit, coverage = _test_steps_and_publishing(job)
            if not tests:
                continue
            jobs_with_tests += 1
            where = f"{_rel(path)} job {_job_name(job)}"
            assert junit and coverage, f"{where}: PublishTestResults@2 and PublishCodeCoverageResults@2 needed"
            steps = _steps(job)
            assert steps.index(junit) > steps.index(tests[-1]) and steps.index(coverage) > steps.index(tests[-1])
            for publish in (junit, coverage):
                assert publish.get("condition") == "succeededOrFailed()", (
                    f"{where}: {publish['task']} must run when tests fail"
                )
            assert junit["inputs"]["testResultsFormat"] == "JUnit"
            search_folder = junit["inputs"].get("searchFolder", "$(System.DefaultWorkingDirectory)")
            junit_glob = f"{search_folder}/{junit['inputs']['testResultsFiles']}"
            for step in tests:
                pytest_args = shlex.split(_commands(step).make_variables().get("PYTEST_ARGS", ""))
                junit_files = [a.split("=", 1)[1] for a in pytest_args if a.startswith("--junitxml=")]
                cobertura = [a.split("xml:", 1)[1] for a in pytest_args if a.startswith("--cov-report=xml:")]
                assert junit_files and cobertura, f"{_where(path, job, step)}: --junitxml= and --cov-report=xml: needed"
                coverage_glob = coverage["inputs"]["summaryFileLocation"]
                assert all(fnmatch.fnmatch(f, PLACEHOLDER.sub(VALUE, junit_glob)) for f in junit_files), (
                    junit_files,
                    junit_glob,
                )
                assert all(fnmatch.fnmatch(f, PLACEHOLDER.sub(VALUE, coverage_glob)) for f in cobertura), (
                    cobertura,
                    coverage_glob,
                )
    assert jobs_with_tests >= 2


# (c) stages and triggers: each runs in exactly its case ------------------------------------------

CONDITION_TOKEN = re.compile(r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<name>[A-Za-z_][\w.]*)|(?P<punct>[(),\[\]]))")


FUNCTIONS = {
    "and",
    "or",
    "not",
    "eq",
    "ne",
    "in",
    "notin",
    "startswith",
    "endswith",
    "contains",
    "succeeded",
    "succeededorfailed",
    "always",
    "failed",
    "canceled",
}


def _evaluate_condition(expression: str, variables: dict[str, str]) -> Any:
    """A small evaluator of Azure DevOps condition expressions, enough for stage and job conditions.

    Unknown functions raise, so a condition the test cannot judge fails instead of passing.
    String comparisons ignore case, as Azure DevOps does.
    """
    tokens, position = [], 0
    while position < len(expression.rstrip()):
        match = CONDITION_TOKEN.match(expression, position)
        assert match, f"cannot parse condition at {expression[position:]!r}"
        tokens.append(match)
        position = match.end()
    index = 0

    def take() -> re.Match:
        nonlocal index
        index += 1
        return tokens[index - 1]

    def arguments() -> list[Any]:
        assert take().group("punct") == "("
        values = []
        while tokens[index].group("punct") != ")":
            values.append(value())
            if tokens[index].group("punct") == ",":
                take()
        take()
        return values

    def value() -> Any:
        token = take()
        if token.group("string"):
            return token.group("string")[1:-1].replace("''", "'")
        name = token.group("name")
        if name.lower() == "variables" and index < len(tokens) and tokens[index].group("punct") == "[":
            take()
            key = value()
            assert take().group("punct") == "]"
            return variables.get(key, "")
        if name.lower().startswith("variables."):
            return variables.get(name.split(".", 1)[1], "")
        if name.lower() in ("true", "false"):
            return name.lower() == "true"
        assert name.lower() in FUNCTIONS, f"condition function {name} not understood by this test"
        args = arguments()
        low = [a.lower() if isinstance(a, str) else a for a in args]
        functions = {
            "and": lambda: all(args),
            "or": lambda: any(args),
            "not": lambda: not args[0],
            "eq": lambda: low[0] == low[1],
            "ne": lambda: low[0] != low[1],
            "in": lambda: low[0] in low[1:],
            "notin": lambda: low[0] not in low[1:],
            "startswith": lambda: low[0].startswith(low[1]),
            "endswith": lambda: low[0].endswith(low[1]),
            "contains": lambda: low[1] in low[0],
            "succeeded": lambda: True,
            "succeededorfailed": lambda: True,
            "always": lambda: True,
            "failed": lambda: False,
            "canceled": lambda: False,
        }
        return functions[name.lower()]()

    result = value()
    assert index == len(tokens), f"trailing tokens in condition {expression!r}"
    return result


PR_INTO_MAIN = {
    "Build.Reason": "PullRequest",
    "Build.SourceBranch": "refs/pull/7/merge",
    "System.PullRequest.TargetBranch": "refs/heads/main",
}
CICD_CASES = {
    "pr_into_main_azure_repos": (PR_INTO_MAIN, {"ci"}),
    "pr_into_main_github": (dict(PR_INTO_MAIN, **{"System.PullRequest.TargetBranch": "main"}), {"ci"}),
    "pr_into_release": (dict(PR_INTO_MAIN, **{"System.PullRequest.TargetBranch": "refs/heads/release"}), set()),
    "push_to_main": ({"Build.Reason": "IndividualCI", "Build.SourceBranch": "refs/heads/main"}, {"deploy_staging"}),
    "batched_push_to_main": (
        {"Build.Reason": "BatchedCI", "Build.SourceBranch": "refs/heads/main"},
        {"deploy_staging"},
    ),
    "push_to_release": ({"Build.Reason": "IndividualCI", "Build.SourceBranch": "refs/heads/release"}, {"deploy_prod"}),
    "push_to_feature": ({"Build.Reason": "IndividualCI", "Build.SourceBranch": "refs/heads/feature/x"}, set()),
    "manual_run_on_release": ({"Build.Reason": "Manual", "Build.SourceBranch": "refs/heads/release"}, set()),
    "schedule_on_main": ({"Build.Reason": "Schedule", "Build.SourceBranch": "refs/heads/main"}, set()),
}


def test_condition_evaluator_has_teeth() -> None:
    variables = {"Build.Reason": "PullRequest"}
    assert _evaluate_condition("eq(variables['Build.Reason'], 'pullrequest')", variables) is True
    assert _evaluate_condition("and(succeeded(), ne(variables.Build.Reason, 'PullRequest'))", variables) is False
    assert _evaluate_condition("in(variables['X'], 'a', '')", variables) is True
    with pytest.raises(AssertionError, match="not understood"):
        _evaluate_condition("dependencies.a.result", variables)


def test_cicd_triggers_on_main_and_release_and_prs_into_main(pipelines: dict[Path, Any]) -> None:
    doc = pipelines[CICD_PIPELINE]
    assert sorted(doc["trigger"]["branches"]["include"]) == ["main", "release"]
    assert doc["pr"]["branches"]["include"] == ["main"]


def test_cicd_has_exactly_three_independent_stages(pipelines: dict[Path, Any]) -> None:
    stages = pipelines[CICD_PIPELINE]["stages"]
    assert [s["stage"] for s in stages] == ["ci", "deploy_staging", "deploy_prod"]
    # independent: a skipped CI stage must not skip the deploy that follows a merge
    assert all(s.get("dependsOn") == [] for s in stages)


@pytest.mark.parametrize("case", CICD_CASES)
def test_cicd_stage_runs_only_in_its_case(pipelines: dict[Path, Any], case: str) -> None:
    variables, expected = CICD_CASES[case]
    running = {s["stage"] for s in pipelines[CICD_PIPELINE]["stages"] if _evaluate_condition(s["condition"], variables)}
    assert running == expected


def _stage_bundle_runs(stage: dict) -> set[tuple[str, str]]:
    """(bundle sub-command, target) pairs a stage runs, through make or directly."""
    runs = set()
    for job in _items(stage.get("jobs")):
        for step in _steps(job):
            if _script(step) is not None:
                for command, target in zip(_commands(step).bundle_commands(), _commands(step).bundle_targets()):
                    runs.add((command[0], target))
    return runs


def test_cicd_stages_run_the_right_commands(pipelines: dict[Path, Any]) -> None:
    stages = {s["stage"]: s for s in pipelines[CICD_PIPELINE]["stages"]}
    assert _stage_bundle_runs(stages["ci"]) == {("validate", "staging"), ("validate", "prod")}
    assert _stage_bundle_runs(stages["deploy_staging"]) == {("deploy", "staging")}
    assert _stage_bundle_runs(stages["deploy_prod"]) == {("deploy", "prod")}
    ci_make = {
        t
        for job in stages["ci"]["jobs"]
        for s in _steps(job)
        if _script(s) is not None
        for t in _commands(s).make_targets()
    }
    assert "unit" in ci_make


def test_tests_pipeline_triggers_on_main_and_nightly(pipelines: dict[Path, Any]) -> None:
    doc = pipelines[TESTS_PIPELINE]
    assert doc["trigger"]["branches"]["include"] == ["main"]
    assert doc.get("pr") == "none", "PRs are the CI/CD pipeline's job"
    schedules = _items(doc.get("schedules"))
    assert schedules, "no nightly schedule"
    for schedule in schedules:
        assert len(schedule["cron"].split()) == 5
        assert schedule.get("always", "false").lower() in TRUE_VALUES, "nightly runs must not depend on new commits"
        assert schedule["branches"]["include"] == ["main"]


def test_tests_pipeline_runs_tests_then_the_nightly_chain_on_test(pipelines: dict[Path, Any]) -> None:
    jobs = {_job_name(job): job for _, job in _jobs(pipelines[TESTS_PIPELINE])}
    local = [t for s in _steps(jobs["local_tests"]) if _script(s) is not None for t in _commands(s).make_targets()]
    assert local == ["unit", "integration"]
    assert jobs["test_target"].get("dependsOn") == "local_tests", "deploy only what passed the local tests"

    runs = []
    for step in _steps(jobs["test_target"]):
        if _script(step) is not None:
            for command in _commands(step).bundle_commands():
                runs.append((command[0], tuple(_commands(step).bundle_targets()), _commands(step).make_variables()))
    assert [(sub, targets) for sub, targets, _ in runs] == [("deploy", ("test",))] + [("run", ("test",))]
    bundle_jobs = _bundle_jobs("test")
    assert tuple(variables.get("JOB") for _, _, variables in runs[1:]) == TEST_TARGET_JOBS
    for _, _, variables in runs[1:]:
        job_key = variables["JOB"]
        assert job_key in bundle_jobs, f"{job_key} is not a job of target test in resources/*.yml"
        assert "PARAMS" not in variables, "the chain job takes no parameters: it runs every served pair"
        assert job_key not in _bundle_jobs("prod"), "the nightly chain loads the sample: never on prod"
