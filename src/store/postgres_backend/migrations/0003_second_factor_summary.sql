-- Latchkey's PostgreSQL schema, version 3: what second factors each user holds, kept on the
-- user's row. A token check that shows them (`GET /user/current`) then reads three columns of
-- a row it reads anyway, where three subqueries over the factor tables cost it a quarter of
-- its time. Triggers recount the three from the factor tables in the same statement as every
-- change to those tables, so the columns cannot disagree with the rows they summarize,
-- whoever writes them (a node, `store copy`, an administrator's SQL). A restore of
-- `pg_dump`'s output brings the columns with the rows, as dumped.

ALTER TABLE users
    ADD COLUMN totp_on boolean NOT NULL DEFAULT false,
    ADD COLUMN passkey_count bigint NOT NULL DEFAULT 0 CHECK (passkey_count >= 0),
    ADD COLUMN recovery_codes_left integer NOT NULL DEFAULT 0 CHECK (recovery_codes_left >= 0);

CREATE FUNCTION recount_second_factors(counted_user_id bigint) RETURNS void
LANGUAGE sql AS $$
    UPDATE users SET
        totp_on = EXISTS (SELECT 1 FROM active_totp WHERE user_id = counted_user_id),
        passkey_count = (SELECT count(*) FROM passkeys WHERE user_id = counted_user_id),
        recovery_codes_left = COALESCE(
            (SELECT cardinality(hashes) FROM recovery_codes WHERE user_id = counted_user_id),
            0
        )
    WHERE id = counted_user_id;
$$;

CREATE FUNCTION second_factor_rows_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM recount_second_factors(OLD.user_id);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.user_id IS DISTINCT FROM OLD.user_id) THEN
        PERFORM recount_second_factors(NEW.user_id);
    END IF;
    RETURN NULL;
END;
$$;

-- A TOTP's accepted step and a passkey's last use change no count: no trigger on them.
CREATE TRIGGER active_totp_counted
    AFTER INSERT OR DELETE OR UPDATE OF user_id ON active_totp
    FOR EACH ROW EXECUTE FUNCTION second_factor_rows_changed();
CREATE TRIGGER passkeys_counted
    AFTER INSERT OR DELETE OR UPDATE OF user_id ON passkeys
    FOR EACH ROW EXECUTE FUNCTION second_factor_rows_changed();
CREATE TRIGGER recovery_codes_counted
    AFTER INSERT OR DELETE OR UPDATE OF user_id, hashes ON recovery_codes
    FOR EACH ROW EXECUTE FUNCTION second_factor_rows_changed();

SELECT recount_second_factors(id) FROM users;
