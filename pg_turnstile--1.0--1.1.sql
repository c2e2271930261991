/* pg_turnstile--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_turnstile UPDATE TO '1.1'" to load this file. \quit

-- 1.1 changes no SQL object: it is the first step of the upgrade chain, which
-- sql/upgrade.sql walks from the first released version to the current one.
