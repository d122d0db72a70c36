#!/bin/sh
# As in the Kafka distribution: the health check of docker-compose.yml calls it by this path.
exec java -Xmx128m -cp '/opt/kafka/libs/*' org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
