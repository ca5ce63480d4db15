-- MySQL init script: compose mounts it in /docker-entrypoint-initdb.d, and the image runs it once, when it creates
-- the data directory, after it created MYSQL_USER (`openprem`, password WA_DB_PASSWORD from compose/.env).  It
-- makes the apps' database (with the character set the apps' own CREATE would use) and gives that user every
-- right on it and on nothing else, so webapp and coreapp never connect as root (which only this init uses).
CREATE DATABASE IF NOT EXISTS `openprem` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
GRANT ALL PRIVILEGES ON `openprem`.* TO 'openprem'@'%';
