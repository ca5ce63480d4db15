# Stand-in for mysql:8.0 (the compose smoke test, when the real image cannot be pulled): Debian bookworm's MariaDB
# 10.11 behind an entrypoint that does what compose asks of the official one (standins/mysql-entrypoint.sh).
FROM openprem-standin/bookworm:latest
RUN apt-get update \
 && apt-get install -y --no-install-recommends mariadb-server mariadb-client \
 && rm -rf /var/lib/apt/lists/* /var/lib/mysql \
 && install -d -o mysql -g mysql -m 0750 /var/lib/mysql \
 && install -d -o mysql -g mysql -m 0755 /run/mysqld /docker-entrypoint-initdb.d \
 && command -v mysqladmin mysql mysqld
COPY mysql-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /var/lib/mysql
EXPOSE 3306
ENTRYPOINT ["/bin/sh", "/usr/local/bin/docker-entrypoint.sh"]
CMD ["mysqld"]
