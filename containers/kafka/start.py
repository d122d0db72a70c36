"""Start script of the CI-only Kafka stand-in image (containers/README.md).

Configured like the official apache/kafka image, so docker-compose.yml and the testcontainers
fixture work with either: every KAFKA_* variable becomes a server.properties line (KAFKA_
dropped, lower case, "___" -> "-", "__" -> "_", "_" -> "."); CLUSTER_ID formats an empty log
directory on the first start.
"""

import os
import sys
from pathlib import Path

NOT_PROPERTIES = {"KAFKA_HEAP_OPTS", "KAFKA_OPTS", "KAFKA_LOG4J_OPTS", "KAFKA_JVM_PERFORMANCE_OPTS"}
CLASSPATH = "/opt/kafka/libs/*"
CONFIG = Path("/tmp/kafka/server.properties")


def property_name(variable: str) -> str:
    name = variable[len("KAFKA_") :].lower()
    return name.replace("___", "\0").replace("__", "\1").replace("_", ".").replace("\0", "-").replace("\1", "_")


def main() -> None:
    lines = [
        f"{property_name(k)}={v}"
        for k, v in sorted(os.environ.items())
        if k.startswith("KAFKA_") and k not in NOT_PROPERTIES
    ]
    CONFIG.parent.mkdir(parents=True, exist_ok=True)
    CONFIG.write_text("\n".join(lines) + "\n")
    java = [
        "java",
        *os.environ.get("KAFKA_HEAP_OPTS", "-Xmx512m -Xms256m").split(),
        *os.environ.get("KAFKA_LOG4J_OPTS", "").split(),
        "-cp",
        CLASSPATH,
    ]
    log_dirs = os.environ.get("KAFKA_LOG_DIRS", "/var/lib/kafka/data").split(",")[0]
    if not (Path(log_dirs) / "meta.properties").exists():
        cluster = os.environ.get("CLUSTER_ID")
        if not cluster:
            sys.exit("kafka stand-in: set CLUSTER_ID to format an empty log directory")
        code = os.spawnvp(
            os.P_WAIT, "java", [*java, "kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(CONFIG)]
        )
        if code != 0:
            sys.exit(f"kafka stand-in: storage format failed ({code})")
    os.execvp("java", [*java, "kafka.Kafka", str(CONFIG)])


if __name__ == "__main__":
    main()
