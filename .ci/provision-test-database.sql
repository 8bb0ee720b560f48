-- The role and database the tests use (config/test.toml): run by a superuser with psql
-- variables `user`, `password` and `db`; safe to run again. .ci/run runs it on CI, and
-- .devcontainer/provision-database.sh in the Dev Container.

-- Not a superuser: the migrations must work for an ordinary database owner.
SELECT format('CREATE ROLE %I LOGIN CREATEDB PASSWORD %L', :'user', :'password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'user') \gexec
SELECT format('ALTER ROLE %I LOGIN CREATEDB NOSUPERUSER PASSWORD %L', :'user', :'password') \gexec
-- For bench/run: a CHECKPOINT between two timed bulk loads (PostgreSQL 15 and later).
SELECT format('GRANT pg_checkpoint TO %I', :'user')
WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pg_checkpoint') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
