"""A small client of a running Dagster webserver, for `smartbuy ops rerun` and `ops redrive`.

Everything goes through `dagster_graphql.DagsterGraphQLClient` (the webserver's /graphql), so a
run launched here is queued by the daemon exactly like one launched from the UI. Every failure
a person can act on becomes a `WebserverError` (a ValueError: `one_line_errors` prints it as
one line): no webserver at the URL, unknown job, bad partition key, invalid run config.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_URL = "http://127.0.0.1:3000"
LOCATION = "smartbuy"  # workspace.yaml
REPOSITORY = "__repository__"  # the name Dagster gives a Definitions object's repository
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

# DagsterGraphQLClient warns about the per-dimension partition tags ("dagster/partition/shard")
# that Dagster itself adds to multi-partition runs and that dagster.yaml's concurrency limit uses.
warnings.filterwarnings("ignore", message=r"Non-compliant tag keys", category=DeprecationWarning)


class WebserverError(ValueError):
    """A problem with the request or the webserver, worded for the person at the terminal."""


JOBS_QUERY = """
query SmartbuyJobs {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes { name location { name } jobs { name } partitionSets { name pipelineName } }
    }
    ... on PythonError { message }
  }
}"""

PARTITIONS_QUERY = """
query SmartbuyPartitions($selector: RepositorySelector!, $name: String!) {
  partitionSetOrError(repositorySelector: $selector, partitionSetName: $name) {
    __typename
    ... on PartitionSet {
      partitionsOrError { __typename ... on Partitions { results { name } } ... on PythonError { message } }
    }
    ... on PartitionSetNotFoundError { message }
    ... on PythonError { message }
  }
}"""

PARTITION_TAGS_QUERY = """
query SmartbuyPartitionTags($selector: RepositorySelector!, $name: String!, $partition: String!) {
  partitionSetOrError(repositorySelector: $selector, partitionSetName: $name) {
    __typename
    ... on PartitionSet {
      partition(partitionName: $partition) {
        tagsOrError { __typename ... on PartitionTags { results { key value } } ... on PythonError { message } }
      }
    }
  }
}"""

RUN_QUERY = """
query SmartbuyRun($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId jobName status tags { key value } }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}"""

STEP_OUTPUT_METADATA_QUERY = """
query SmartbuyRunOutputs($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on ExecutionStepOutputEvent {
          stepKey
          metadataEntries { label ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } }
        }
      }
    }
  }
}"""


@dataclass
class Webserver:
    """A reachable webserver: `query` sends GraphQL, `submit` launches a job run."""

    url: str
    client: object  # dagster_graphql.DagsterGraphQLClient

    def run_link(self, run_id: str) -> str:
        return f"{self.url}/runs/{run_id}"

    def query(self, text: str, variables: dict | None = None) -> dict:
        from dagster_graphql import DagsterGraphQLClientError

        try:
            return self.client._execute(text, variables)  # the client's own transport and error mapping
        except DagsterGraphQLClientError as exc:
            raise WebserverError(f"GraphQL request to {self.url} failed: {_first_line(exc)}") from exc

    # -- jobs and partitions ----------------------------------------------------------------------

    def jobs(self) -> dict[str, str | None]:
        """Job name -> its partition set name (None when the job is not partitioned)."""
        data = self.query(JOBS_QUERY)["repositoriesOrError"]
        if data["__typename"] != "RepositoryConnection":
            raise WebserverError(f"the webserver at {self.url} cannot list its code: {data.get('message', '')}")
        repos = [n for n in data["nodes"] if n["location"]["name"] == LOCATION]
        if not repos:
            raise WebserverError(f"the webserver at {self.url} has no code location {LOCATION!r} "
                                 "(is it serving this project's workspace.yaml?)")
        jobs: dict[str, str | None] = {}
        for repo in repos:
            sets = {p["pipelineName"]: p["name"] for p in repo["partitionSets"]}
            for job in repo["jobs"]:
                if not job["name"].startswith("__"):
                    jobs[job["name"]] = sets.get(job["name"])
        return jobs

    def job_partition_set(self, job: str) -> str | None:
        jobs = self.jobs()
        if job not in jobs:
            raise WebserverError(f"unknown job {job!r}; jobs in {LOCATION}: {', '.join(sorted(jobs))}")
        return jobs[job]

    def partition_keys(self, partition_set: str) -> list[str]:
        data = self.query(PARTITIONS_QUERY, {"selector": _selector(), "name": partition_set})["partitionSetOrError"]
        if data["__typename"] != "PartitionSet":
            raise WebserverError(f"partition set {partition_set!r}: {data.get('message', data['__typename'])}")
        parts = data["partitionsOrError"]
        if parts["__typename"] != "Partitions":
            raise WebserverError(f"partitions of {partition_set!r}: {_first_line(parts.get('message', ''))}")
        return [p["name"] for p in parts["results"]]

    def partition_tags(self, partition_set: str, key: str) -> dict[str, str]:
        """The tags the UI puts on a run of that partition (for hour x shard: dagster/partition
        plus dagster/partition/hour and dagster/partition/shard, which the shard limit uses)."""
        data = self.query(PARTITION_TAGS_QUERY, {"selector": _selector(), "name": partition_set,
                                                 "partition": key})["partitionSetOrError"]
        tags = (data.get("partition") or {}).get("tagsOrError") or {}
        if tags.get("__typename") != "PartitionTags":
            raise WebserverError(f"bad partition key {key!r}: {_first_line(tags.get('message', ''))}")
        return {t["key"]: t["value"] for t in tags["results"]}

    # -- runs -------------------------------------------------------------------------------------

    def submit(self, job: str, *, run_config: dict | None = None, tags: dict[str, str] | None = None) -> str:
        from dagster_graphql import DagsterGraphQLClientError

        try:
            return self.client.submit_job_execution(
                job, repository_location_name=LOCATION, repository_name=REPOSITORY,
                run_config=run_config or {}, tags=tags or {})
        except DagsterGraphQLClientError as exc:
            kind = exc.args[0] if exc.args else ""
            body = exc.args[1] if len(exc.args) > 1 else getattr(exc, "body", "")
            if kind in ("RunConfigValidationInvalid", "PipelineConfigValidationInvalid"):
                messages = "; ".join(e.get("message", str(e)) if isinstance(e, dict) else str(e) for e in body or [])
                raise WebserverError(f"invalid run config for {job}: {messages}") from exc
            if kind in ("JobNotFoundError", "PipelineNotFoundError"):
                raise WebserverError(f"unknown job {job!r} in code location {LOCATION!r}") from exc
            raise WebserverError(f"launching {job} failed: {kind}: {_first_line(body or exc)}") from exc

    def run(self, run_id: str) -> dict:
        data = self.query(RUN_QUERY, {"runId": run_id})["runOrError"]
        if data["__typename"] != "Run":
            raise WebserverError(f"run {run_id}: {data.get('message', data['__typename'])}")
        return {"run_id": data["runId"], "job": data["jobName"], "status": data["status"],
                "tags": {t["key"]: t["value"] for t in data["tags"]}}

    def wait(self, run_ids: list[str], *, timeout_s: float = 1800, poll_s: float = 2.0,
             on_done=None) -> dict[str, str]:
        """Poll until every run is SUCCESS, FAILURE or CANCELED; returns run id -> status."""
        from dagster_graphql import DagsterGraphQLClientError

        pending, done = list(run_ids), {}
        deadline = time.monotonic() + timeout_s
        while pending:
            for run_id in list(pending):
                try:
                    status = self.client.get_run_status(run_id).value
                except DagsterGraphQLClientError as exc:
                    raise WebserverError(f"status of run {run_id}: {_first_line(exc)}") from exc
                if status in TERMINAL:
                    done[run_id] = status
                    pending.remove(run_id)
                    if on_done:
                        on_done(run_id, status)
            if pending:
                if time.monotonic() > deadline:
                    raise WebserverError(f"gave up waiting after {timeout_s:.0f}s for run(s) "
                                         f"{', '.join(pending)}: see {self.run_link(pending[0])}")
                time.sleep(poll_s)
        return done

    def output_metadata(self, run_id: str) -> dict[str, object]:
        """Int and text metadata of the run's step outputs (e.g. the redrive count)."""
        data = self.query(STEP_OUTPUT_METADATA_QUERY, {"runId": run_id})["logsForRun"]
        meta: dict[str, object] = {}
        for event in data.get("events") or []:
            for entry in event.get("metadataEntries") or []:
                value = entry.get("intValue", entry.get("text"))
                if value is not None:
                    meta[entry["label"]] = value
        return meta


def connect(url: str = DEFAULT_URL, *, timeout_s: float = 5.0) -> Webserver:
    """A client of the webserver at `url`, after checking something answers /server_info."""
    import requests
    from dagster_graphql import DagsterGraphQLClient

    url = (url or DEFAULT_URL).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebserverError(f"bad webserver URL {url!r}: expected like {DEFAULT_URL}")
    unreachable = f"no Dagster webserver at {url}: start it with `make ui` (or pass --url)"
    try:
        info = requests.get(f"{url}/server_info", timeout=timeout_s)
        info.raise_for_status()
        if "dagster_webserver_version" not in info.json():
            raise WebserverError(unreachable)
    except (requests.RequestException, ValueError) as exc:
        raise WebserverError(unreachable) from exc
    client = DagsterGraphQLClient(parts.hostname, port_number=parts.port, use_https=parts.scheme == "https",
                                  path_prefix=parts.path.rstrip("/"), timeout=60)
    return Webserver(url=url, client=client)


def _selector() -> dict[str, str]:
    return {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else ""


# -- choosing partitions (pure: tested without a webserver) ----------------------------------------

@dataclass(frozen=True)
class PartitionPlan:
    """What to launch: one run per key in `keys`, or (range_) one run over start..end."""

    keys: tuple[str, ...] = ()
    range_: tuple[str, str] | None = None

    def describe(self) -> str:
        if self.range_:
            return f"{self.range_[0]}..{self.range_[1]}"
        return ", ".join(self.keys) or "(unpartitioned)"


def plan_partitions(job: str, valid: list[str] | None, *, partition: str | None = None, hour: str | None = None,
                    shard: str | None = None, all_shards: bool = False, from_: str | None = None,
                    to: str | None = None, per_partition: bool = False) -> PartitionPlan:
    """Turn the CLI's partition options into keys, checked against the job's partition keys."""
    chose = any(v is not None for v in (partition, hour, shard, from_, to)) or all_shards
    if valid is None:
        if chose:
            raise WebserverError(f"job {job} is not partitioned: drop the partition options")
        return PartitionPlan()
    if not chose:
        raise WebserverError(f"job {job} is partitioned: give --partition KEY, --hour H --shard S, "
                             f"--hour H --all-shards or --from H1 --to H2 (e.g. {valid[-1]!r})")
    multi = "|" in valid[0]
    shards = sorted({k.split("|", 1)[1] for k in valid}, key=_natural) if multi else []
    firsts = list(dict.fromkeys(k.split("|", 1)[0] for k in valid)) if multi else list(valid)
    example = f"like {valid[-1]!r}, from {valid[0]!r} to {valid[-1]!r}"

    def check(key: str) -> str:
        if key not in valid_set:
            raise WebserverError(f"bad partition key {key!r} for {job}: expected {example}")
        return key

    def check_first(value: str, option: str) -> str:
        if value not in firsts:
            raise WebserverError(f"bad {option} {value!r} for {job}: expected one of its partitions, "
                                 f"from {firsts[0]!r} to {firsts[-1]!r}")
        return value

    valid_set = set(valid)
    if from_ is not None or to is not None:
        if from_ is None or to is None or partition is not None or hour is not None or all_shards:
            raise WebserverError("a range needs both --from and --to (and optionally --shard), nothing else")
        start, end = check_first(from_, "--from"), check_first(to, "--to")
        if firsts.index(start) > firsts.index(end):
            raise WebserverError(f"--from {start} is after --to {end}")
        if multi:
            if shard is not None and shard not in shards:
                raise WebserverError(f"bad --shard {shard!r} for {job}: expected one of {', '.join(shards)}")
            lo, hi = (shard, shard) if shard is not None else (shards[0], shards[-1])
            start_key, end_key = f"{start}|{lo}", f"{end}|{hi}"
            if per_partition:
                hours = firsts[firsts.index(start): firsts.index(end) + 1]
                picked = [s for s in shards if shard is None or s == shard]
                return PartitionPlan(keys=tuple(f"{h}|{s}" for h in hours for s in picked))
        else:
            if shard is not None:
                raise WebserverError(f"job {job} has no shards: drop --shard")
            start_key, end_key = start, end
            if per_partition:
                return PartitionPlan(keys=tuple(firsts[firsts.index(start): firsts.index(end) + 1]))
        return PartitionPlan(range_=(start_key, end_key))
    if partition is not None:
        if hour is not None or shard is not None or all_shards:
            raise WebserverError("give either --partition or --hour/--shard, not both")
        return PartitionPlan(keys=(check(partition),))
    if not multi:
        raise WebserverError(f"job {job} is not partitioned by hour x shard: use --partition KEY ({example})")
    if hour is None:
        raise WebserverError("--shard and --all-shards need --hour")
    check_first(hour, "--hour")
    if all_shards:
        if shard is not None:
            raise WebserverError("give either --shard or --all-shards")
        return PartitionPlan(keys=tuple(f"{hour}|{s}" for s in shards))
    if shard is None:
        raise WebserverError("--hour needs --shard S or --all-shards")
    if shard not in shards:
        raise WebserverError(f"bad --shard {shard!r} for {job}: expected one of {', '.join(shards)}")
    return PartitionPlan(keys=(check(f"{hour}|{shard}"),))


def _natural(value: str):
    return (0, int(value)) if value.isdigit() else (1, value)
