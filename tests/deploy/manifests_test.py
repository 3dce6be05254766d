#!/usr/bin/python3
"""deploy.manifests: the deployment files render and pass their checkers.

  manifests_test.py --repo DIR --gateway BIN --client BIN --work_dir DIR

No Docker engine or Kubernetes cluster runs here, so this checks everything
short of running them:
  compose     `docker-compose config -q` accepts docker-compose.yml;
  prometheus  `promtool check config` accepts deploy/prometheus/prometheus.yml;
  kustomize   `kubectl kustomize` renders deploy/k8s and overlays/tls, and the
              rendering keeps the promises README.md makes (probes, thread
              count = CPU limit, grace period > drain, services, config keys
              that ServerConfig knows);
  schemas     every rendered object validates against its Kubernetes API
              schema (npm kubernetes-models; tests/deploy/validate_k8s.js);
  yamllint    `yamllint --strict .` with the repository's .yamllint;
  dashboard   every panel has a description and queries, through the
              provisioned datasource;
  Dockerfile  its runtime packages provide every shared library the two
              binaries load (ldd + dpkg -S), and its build packages are in
              tools/setup.sh.
"""

import argparse
import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tools.harness import check, main_wrapper, run

# Always in the debian:12 image: dpkg and apt depend on them.
BASE_IMAGE_PACKAGES = {"libc6", "libgcc-s1"}


def check_compose_and_prometheus(repo):
    result = run(["docker-compose", "config", "-q"], timeout_s=60, cwd=repo)
    check(result.returncode == 0, "docker-compose config -q failed")
    result = run(["promtool", "check", "config",
                  "deploy/prometheus/prometheus.yml"], timeout_s=30, cwd=repo)
    check(result.returncode == 0, "promtool check config failed")


def render(repo, path, out):
    result = run(["kubectl", "kustomize", path], timeout_s=60, cwd=repo,
                 echo_stdout=False)
    check(result.returncode == 0, f"kubectl kustomize {path} failed")
    out.write_text(result.stdout)
    print(f"rendered to {out}")
    objects = [o for o in yaml.safe_load_all(result.stdout) if o]
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def proto_fields(repo):
    text = (repo / "proto/server_config.proto").read_text()
    return set(re.findall(r"^\s*(?:string|u?int(?:32|64)|bool)\s+(\w+)\s*=",
                          text, re.M))


def gateway_container(objects):
    deployment = objects[("Deployment", "edge-gateway")]
    pod = deployment["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def check_base(repo, objects):
    kinds = sorted(kind for kind, _ in objects)
    check(kinds == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler",
                    "Service", "Service"], f"base renders {kinds}")
    config_map = next(o for (k, _), o in objects.items() if k == "ConfigMap")
    config = json.loads(config_map["data"]["gateway.json"])
    unknown = set(config) - proto_fields(repo)
    check(not unknown, f"gateway.json: fields ServerConfig lacks: {unknown}")

    pod, container = gateway_container(objects)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check(container[probe].get("grpc", {}).get("port") == 50051,
              f"base {probe} is not a gRPC probe on 50051")
    omp = next(e for e in container["env"] if e["name"] == "OMP_NUM_THREADS")
    check(omp["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu",
          "OMP_NUM_THREADS does not come from the CPU limit")
    resources = container["resources"]
    check(resources["requests"] == resources["limits"],
          "requests != limits (not Guaranteed QoS)")
    pre_stop_s = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    # server/main.cc gives gRPC 2 s to flush the drained answers.
    needed_s = pre_stop_s + config["drain_timeout_ms"] / 1000 + 2
    grace_s = pod["terminationGracePeriodSeconds"]
    check(grace_s > needed_s, f"terminationGracePeriodSeconds {grace_s} <= "
          f"preStop + drain + flush = {needed_s} s")
    # Replicas to rebalance to: connections and streams age out (the
    # schema's defaults, for a single box, are off).
    check(config["max_connection_age_ms"] > 0, "max_connection_age_ms unset")
    check(config["max_stream_age_ms"] > 0, "max_stream_age_ms unset")
    annotations = objects[("Deployment", "edge-gateway")]["spec"]["template"][
        "metadata"]["annotations"]
    check(annotations.get("prometheus.io/port") == "9464",
          "no Prometheus scrape annotations")
    check(objects[("Service", "edge-gateway-headless")]["spec"]["clusterIP"]
          == "None", "edge-gateway-headless is not headless")
    check(objects[("Service", "edge-gateway")]["spec"]["type"] == "ClusterIP",
          "edge-gateway is not ClusterIP")


def check_tls_overlay(objects):
    _, container = gateway_container(objects)
    env = {e["name"]: e.get("value") for e in container["env"]}
    for name in ("EDGE_GATEWAY_TLS_CERT_FILE", "EDGE_GATEWAY_TLS_KEY_FILE",
                 "EDGE_GATEWAY_TLS_CLIENT_CA_FILE"):
        check(env.get(name), f"TLS overlay does not set {name}")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        handler = container[probe]
        check("grpc" not in handler and
              handler["exec"]["command"] == ["edge-gateway-healthcheck"],
              f"TLS overlay {probe} is not the exec health check")


def check_schemas(repo, work, rendered):
    """npm ci (once per lock file) in the work dir, then validate_k8s.js."""
    source = repo / "tests/deploy"
    node_dir = work.parent / "node"
    node_dir.mkdir(parents=True, exist_ok=True)
    lock = source / "package-lock.json"
    installed_lock = node_dir / "installed-package-lock.json"
    if not (installed_lock.exists() and filecmp.cmp(lock, installed_lock) and
            (node_dir / "node_modules").is_dir()):
        for name in ("package.json", "package-lock.json"):
            shutil.copy(source / name, node_dir / name)
        result = run(["npm", "ci", "--no-audit", "--no-fund",
                      "--loglevel=error"], timeout_s=300, cwd=node_dir)
        check(result.returncode == 0, "npm ci failed")
        shutil.copy(lock, installed_lock)
    shutil.copy(source / "validate_k8s.js", node_dir / "validate_k8s.js")
    result = run(["node", "validate_k8s.js", *map(str, rendered)],
                 timeout_s=60, cwd=node_dir)
    check(result.returncode == 0, "Kubernetes schema validation failed")


def check_dashboard(repo):
    dashboard = json.loads(
        (repo / "deploy/grafana/dashboards/edge-gateway.json").read_text())
    datasource = yaml.safe_load(
        (repo / "deploy/grafana/provisioning/datasources/prometheus.yml")
        .read_text())["datasources"][0]
    variable = next(v for v in dashboard["templating"]["list"]
                    if v["type"] == "datasource")
    check(variable["current"]["value"] == datasource["uid"],
          "the dashboard's datasource does not default to the provisioned one")
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    for panel in panels:
        check(len(panel.get("description", "")) > 40,
              f"panel {panel['title']!r} has no description")
        targets = panel.get("targets")
        check(targets and all(t["expr"] for t in targets),
              f"panel {panel['title']!r} has no query")
    provider = yaml.safe_load(
        (repo / "deploy/grafana/provisioning/dashboards/edge-gateway.yml")
        .read_text())["providers"][0]
    compose = yaml.safe_load((repo / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    check(any(m.endswith(":" + provider["options"]["path"] + ":ro")
              for m in mounts),
          "docker-compose does not mount the dashboards where the provider "
          "looks")
    print(f"dashboard: {len(panels)} panels, each described")


def dockerfile_packages(repo):
    """(build stage packages, runtime stage packages)."""
    text = (repo / "Dockerfile").read_text().replace("\\\n", " ")
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    found = []
    for stage in stages:
        match = re.search(r"apt-get install ([^&]*)", stage)
        check(match, "a Dockerfile stage without apt-get install")
        found.append({w for w in match.group(1).split()
                      if not w.startswith("-")})
    check(len(found) == 2, f"Dockerfile has {len(found)} stages, want 2")
    return found


def library_candidates(library):
    """Paths under which dpkg may have recorded `library` (a path from ldd):
    itself, its symlink target, and both with and without /usr (Debian 12
    merges /lib into /usr/lib, but packages keep the path they ship)."""
    paths = {library, os.path.realpath(library)}
    for path in list(paths):
        paths.add(path[len("/usr"):] if path.startswith("/usr/")
                  else "/usr" + path)
    return paths


def packages_of(libraries):
    """{library: Debian package or None}, with one dpkg -S for them all."""
    candidates = {lib: library_candidates(lib) for lib in libraries}
    everything = sorted(set().union(*candidates.values()))
    # Exit 1 when some path is in no package; the others are still listed.
    result = subprocess.run(["dpkg", "-S", *everything], capture_output=True,
                            text=True, timeout=120)
    owner = {}
    for line in result.stdout.splitlines():
        package, _, path = line.partition(": ")
        owner[path] = package.split(":")[0]
    return {lib: next((owner[p] for p in paths if p in owner), None)
            for lib, paths in candidates.items()}


def check_dockerfile(repo, binaries):
    build, runtime = dockerfile_packages(repo)
    setup = (repo / "tools/setup.sh").read_text()
    setup_packages = set(
        re.search(r"PACKAGES=\((.*?)\)", setup, re.S).group(1).split())
    check(build <= setup_packages,
          f"Dockerfile build packages not in tools/setup.sh: "
          f"{sorted(build - setup_packages)}")
    libraries = set()
    for binary in binaries:
        result = subprocess.run(["ldd", binary], capture_output=True,
                                text=True, timeout=30)
        check(result.returncode == 0, f"ldd {binary} failed")
        libraries.update(re.findall(r"=> (/\S+)", result.stdout))
    owners = packages_of(libraries)
    unowned = sorted(lib for lib, package in owners.items() if not package)
    check(not unowned, f"no Debian package ships {unowned}")
    needed = set(owners.values())
    missing = needed - runtime - BASE_IMAGE_PACKAGES
    check(not missing, f"Dockerfile runtime stage lacks {sorted(missing)}")
    print(f"Dockerfile: runtime packages cover {sorted(needed)}")


def test(args):
    repo = Path(args.repo).resolve()
    work = Path(args.work_dir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    check_compose_and_prometheus(repo)
    base, tls = work / "k8s-base.yaml", work / "k8s-tls.yaml"
    check_base(repo, render(repo, "deploy/k8s", base))
    check_tls_overlay(render(repo, "deploy/k8s/overlays/tls", tls))
    check_schemas(repo, work, [base, tls])
    result = run(["yamllint", "--strict", "."], timeout_s=120, cwd=repo)
    check(result.returncode == 0, "yamllint found problems")
    check_dashboard(repo)
    check_dockerfile(repo, [args.gateway, args.client])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for flag in ("repo", "gateway", "client", "work_dir"):
        parser.add_argument(f"--{flag}", required=True)
    args = parser.parse_args()
    return main_wrapper(lambda: test(args))


if __name__ == "__main__":
    sys.exit(main())
