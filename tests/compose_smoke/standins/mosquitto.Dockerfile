# Stand-in for eclipse-mosquitto:2 (the compose smoke test, when the real image cannot be pulled): Debian
# bookworm's Mosquitto 2.0 with the clients, laid out as the official image (/mosquitto/{config,data,log}).
FROM openprem-standin/bookworm:latest
RUN apt-get update \
 && apt-get install -y --no-install-recommends mosquitto mosquitto-clients \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o mosquitto -g mosquitto /mosquitto/config /mosquitto/data /mosquitto/log \
 && ln -s /usr/sbin/mosquitto /usr/local/bin/mosquitto
VOLUME ["/mosquitto/data", "/mosquitto/log"]
EXPOSE 1883
CMD ["/usr/sbin/mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]
