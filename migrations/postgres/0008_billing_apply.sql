-- A batch of ledger movements in one round trip. The engine's group commit
-- used to send every statement of every movement on its own (five round
-- trips for a priced call), so a batch's time was the network's. This
-- function applies the batch's movements in order, in the caller's
-- transaction, and answers what each did; the engine sends one call per
-- batch. The rules are the ones `store::ledger` runs on SQLite, statement
-- for statement (a test compares the two databases' answers), plus what
-- only several engines on one database can meet: a key another engine
-- wrote first between a look and a write.
--
-- ops: a JSON array of {"op": "hold" | "post" | "void" | "adjust" | "open"
-- | "expire", ...fields of store::ledger::Op}. Answers: a JSON array, one
-- {"r": "held" | "posted" | ..., "v": its facts, if any} per op, in order
-- (store::ledger::Applied).
CREATE FUNCTION kiln_ledger_apply(ops jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    op          jsonb;
    answers     jsonb := '[]'::jsonb;
    answer      jsonb;
    changed     bigint;
    v_account   text;
    v_amount    bigint;
    v_plugin    text;
    v_operation text;
    v_entry     bigint;
    v_charged   bigint;
    v_available bigint;
    v_balance   bigint;
    v_credit    boolean;
    v_sign      bigint;
    v_key       text;
    v_gone      record;
BEGIN
    FOR op IN SELECT value FROM jsonb_array_elements(ops) LOOP
        CASE op->>'op'
        WHEN 'hold' THEN
            v_amount := (op->>'amount')::bigint;
            -- The gate: set aside only what the account can afford, and
            -- never for a key that was charged already. The UPDATE locks
            -- the account row, so two engines never pass on the same money.
            UPDATE billing_accounts SET held = held + v_amount
             WHERE account = op->>'account' AND balance - pending - held >= v_amount
               AND NOT EXISTS (SELECT 1 FROM billing_entries WHERE request_key = op->>'request_key');
            GET DIAGNOSTICS changed = ROW_COUNT;
            IF changed = 0 THEN
                IF EXISTS (SELECT 1 FROM billing_entries WHERE request_key = op->>'request_key') THEN
                    answer := '{"r": "already_charged"}';
                ELSE
                    SELECT balance - pending - held INTO v_available
                      FROM billing_accounts WHERE account = op->>'account';
                    IF FOUND THEN
                        answer := jsonb_build_object('r', 'insufficient', 'v', jsonb_build_object('available', v_available));
                    ELSE
                        answer := '{"r": "no_account"}';
                    END IF;
                END IF;
            ELSE
                INSERT INTO billing_holds (request_key, account, amount, plugin, operation, created_at, expires_at)
                VALUES (op->>'request_key', op->>'account', v_amount, op->>'plugin', op->>'operation',
                        (op->>'now_ms')::bigint, (op->>'expires_at')::bigint)
                ON CONFLICT (request_key) DO NOTHING;
                GET DIAGNOSTICS changed = ROW_COUNT;
                IF changed = 0 THEN
                    -- The same key is held already: undo this hold's sum.
                    UPDATE billing_accounts SET held = held - v_amount WHERE account = op->>'account';
                    answer := '{"r": "in_flight"}';
                ELSE
                    answer := '{"r": "held"}';
                END IF;
            END IF;

        WHEN 'post' THEN
            DELETE FROM billing_holds WHERE request_key = op->>'request_key'
            RETURNING account, amount, plugin, operation
                 INTO v_account, v_amount, v_plugin, v_operation;
            IF NOT FOUND THEN
                answer := '{"r": "not_held"}';
            ELSE
                -- Never more than was held.
                v_charged := least(greatest((op->>'amount')::bigint, 0), v_amount);
                v_entry := NULL;
                IF v_charged > 0 THEN
                    INSERT INTO billing_entries (account, kind, amount, plugin, operation, reason,
                                                 request_key, request_id, created_at)
                    VALUES (v_account, 'charge', v_charged, v_plugin, v_operation, op->>'reason',
                            op->>'request_key', op->>'request_id', (op->>'now_ms')::bigint)
                    ON CONFLICT (request_key) DO NOTHING
                    RETURNING id INTO v_entry;
                END IF;
                -- A charge under this key that another engine wrote first
                -- counts; this one is released.
                UPDATE billing_accounts
                   SET held = held - v_amount,
                       pending = pending + CASE WHEN v_entry IS NULL THEN 0 ELSE v_charged END
                 WHERE account = v_account;
                IF v_entry IS NOT NULL THEN
                    answer := jsonb_build_object('r', 'posted', 'v', jsonb_build_object('entry', v_entry, 'amount', v_charged));
                ELSIF v_charged = 0 THEN
                    answer := '{"r": "voided"}';
                ELSE
                    answer := '{"r": "already_charged"}';
                END IF;
            END IF;

        WHEN 'void' THEN
            DELETE FROM billing_holds WHERE request_key = op->>'request_key'
            RETURNING account, amount INTO v_account, v_amount;
            IF NOT FOUND THEN
                answer := '{"r": "not_held"}';
            ELSE
                UPDATE billing_accounts SET held = held - v_amount WHERE account = v_account;
                answer := '{"r": "voided"}';
            END IF;

        WHEN 'open' THEN
            INSERT INTO billing_accounts (account, created_at)
            VALUES (op->>'account', (op->>'now_ms')::bigint)
            ON CONFLICT (account) DO NOTHING;
            GET DIAGNOSTICS changed = ROW_COUNT;
            answer := CASE WHEN changed = 0 THEN '{"r": "exists"}' ELSE '{"r": "opened"}' END;

        WHEN 'adjust' THEN
            v_account := op->>'account';
            v_amount := (op->>'amount')::bigint;
            v_credit := (op->>'credit')::boolean;
            v_sign := CASE WHEN v_credit THEN 1 ELSE -1 END;
            -- Made once under its key, on any engine.
            v_key := CASE WHEN op->>'key' IS NULL THEN NULL
                          ELSE (CASE WHEN v_credit THEN 'credit' ELSE 'debit' END)
                               || ' ' || v_account || ' ' || (op->>'key') END;
            answer := NULL;
            IF v_key IS NOT NULL THEN
                SELECT id, amount INTO v_entry, v_charged FROM billing_entries WHERE request_key = v_key;
                IF FOUND THEN
                    answer := jsonb_build_object('r', 'already_applied', 'v', jsonb_build_object('entry', v_entry, 'amount', v_charged));
                END IF;
            END IF;
            IF answer IS NULL THEN
                IF v_credit THEN
                    INSERT INTO billing_accounts (account, created_at)
                    VALUES (v_account, (op->>'now_ms')::bigint)
                    ON CONFLICT (account) DO NOTHING;
                END IF;
                UPDATE billing_accounts SET balance = balance + v_sign * v_amount
                 WHERE account = v_account AND (v_credit OR balance - pending - held >= v_amount)
                RETURNING balance INTO v_balance;
                IF NOT FOUND THEN
                    -- The same keyed debit from another engine may have taken
                    -- the row first (this UPDATE waited for it): then this is
                    -- its retry, not an overdraft.
                    IF v_key IS NOT NULL THEN
                        SELECT id, amount INTO v_entry, v_charged FROM billing_entries WHERE request_key = v_key;
                        IF FOUND THEN
                            answer := jsonb_build_object('r', 'already_applied', 'v', jsonb_build_object('entry', v_entry, 'amount', v_charged));
                        END IF;
                    END IF;
                    IF answer IS NULL THEN
                        SELECT balance - pending - held INTO v_available
                          FROM billing_accounts WHERE account = v_account;
                        IF FOUND THEN
                            answer := jsonb_build_object('r', 'overdrawn', 'v', jsonb_build_object('available', v_available));
                        ELSE
                            answer := '{"r": "no_account"}';
                        END IF;
                    END IF;
                ELSE
                    INSERT INTO billing_entries (account, kind, amount, reason, request_key, created_at)
                    VALUES (v_account, CASE WHEN v_credit THEN 'credit' ELSE 'debit' END, v_amount,
                            op->>'reason', v_key, (op->>'now_ms')::bigint)
                    ON CONFLICT (request_key) DO NOTHING
                    RETURNING id INTO v_entry;
                    IF FOUND THEN
                        answer := jsonb_build_object('r', 'adjusted', 'v', jsonb_build_object('entry', v_entry, 'balance', v_balance));
                    ELSE
                        -- Another engine wrote this key between the look and
                        -- the write: undo this one, answer the first.
                        UPDATE billing_accounts SET balance = balance - v_sign * v_amount
                         WHERE account = v_account;
                        SELECT id, amount INTO STRICT v_entry, v_charged
                          FROM billing_entries WHERE request_key = v_key;
                        answer := jsonb_build_object('r', 'already_applied', 'v', jsonb_build_object('entry', v_entry, 'amount', v_charged));
                    END IF;
                END IF;
            END IF;

        WHEN 'expire' THEN
            changed := 0;
            -- Each account once, in one order, so two sweeps never deadlock.
            FOR v_gone IN
                WITH gone AS (
                    DELETE FROM billing_holds WHERE expires_at <= (op->>'now_ms')::bigint
                    RETURNING account, amount
                )
                SELECT account, sum(amount)::bigint AS amount, count(*) AS holds
                  FROM gone GROUP BY account ORDER BY account
            LOOP
                UPDATE billing_accounts SET held = held - v_gone.amount WHERE account = v_gone.account;
                changed := changed + v_gone.holds;
            END LOOP;
            answer := jsonb_build_object('r', 'expired', 'v', changed);

        ELSE
            RAISE EXCEPTION 'kiln_ledger_apply: unknown op %', op->>'op';
        END CASE;
        answers := answers || jsonb_build_array(answer);
    END LOOP;
    RETURN answers;
END
$$;

-- Only the engine's own role moves money: plugin roles (store::sql) could
-- otherwise call it (they have no rights on the tables either).
REVOKE EXECUTE ON FUNCTION kiln_ledger_apply(jsonb) FROM PUBLIC;
