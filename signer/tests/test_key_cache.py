"""The key cache's states, moved by the clock (never by sleeping), through the engine that uses it."""

import asyncio
import threading
import uuid

import pytest
from coincurve import PublicKey

from signer.custody import LocalKeyFileCustody
from signer.engine import Engine, RngSelfCheckFailed, UnlockPending, UnwrapFailed, rng_self_check
from signer.keycache import KEY_POLICY, State

MIN = 60.0


class CountingCustody(LocalKeyFileCustody):
    """The real key-file custody, counting unwraps and able to hold them (a slow KMS)."""

    def __init__(self, path):
        super().__init__(path)
        self.unwraps = 0
        self.gate = threading.Event()
        self.gate.set()

    def unwrap(self, blob, *, context):
        self.unwraps += 1
        self.gate.wait(10)
        return super().unwrap(blob, context=context)


@pytest.fixture
def engine(tmp_path):
    return Engine(CountingCustody(tmp_path / "master-key.json"))


async def _created(engine):
    key_id = uuid.uuid4()
    public_key, material, _ = await engine.create(key_id)
    return key_id, PublicKey(public_key), material


def _recovers(public_key, digest, sig):
    return PublicKey.from_signature_and_message(sig.compact + bytes([sig.recovery_id]), digest, hasher=None) == public_key


def test_a_new_key_is_warm_and_signs_deterministically(engine, clock):
    async def run():
        key_id, public_key, material = await _created(engine)
        assert engine.keys.lookup(key_id)[0] is State.WARM
        a = await engine.sign(key_id, b"\x01" * 32, material)
        b = await engine.sign(key_id, b"\x01" * 32, material)
        assert a == b and _recovers(public_key, b"\x01" * 32, a)
        assert public_key.verify(a.der, b"\x01" * 32, hasher=None)

    asyncio.run(run())


def test_a_key_turns_cool_in_its_refresh_window_and_one_refresh_makes_it_warm_again(engine, clock):
    async def run():
        key_id, public_key, material = await _created(engine)
        clock.advance(12 * MIN)  # before soft TTL - window*(1+jitter) = 12.8 min
        assert engine.keys.lookup(key_id)[0] is State.WARM
        clock.advance(3 * MIN)  # 15 min: past any jittered refresh point, before the hard TTL
        assert engine.keys.lookup(key_id)[0] is State.COOL
        sig = await engine.sign(key_id, b"\x02" * 32, material)  # a COOL key still signs
        assert _recovers(public_key, b"\x02" * 32, sig)
        await engine.keys.loading[key_id]
        assert engine.keys.lookup(key_id)[0] is State.WARM
        assert engine.keys.stats.refreshes == 1

    asyncio.run(run())


def test_a_key_near_its_use_limit_turns_cool(engine, clock):
    async def run():
        key_id, _, material = await _created(engine)
        _, entry = engine.keys.lookup(key_id)
        entry.uses = KEY_POLICY.max_uses - KEY_POLICY.low_water
        assert engine.keys.lookup(key_id)[0] is State.COOL
        entry.uses = KEY_POLICY.max_uses
        assert engine.keys.lookup(key_id)[0] is State.INVALID

    asyncio.run(run())


def test_100_concurrent_signs_on_a_cool_key_cause_exactly_one_refresh(engine, clock):
    async def run():
        key_id, public_key, material = await _created(engine)
        clock.advance(15 * MIN)
        digests = [bytes([i]) * 32 for i in range(100)]
        sigs = await asyncio.gather(*(engine.sign(key_id, d, material) for d in digests))
        assert all(_recovers(public_key, d, s) for d, s in zip(digests, sigs))
        await asyncio.gather(*engine.keys.loading.values())
        assert engine.keys.stats.refreshes == 1
        assert engine.keys.lookup(key_id)[0] is State.WARM

    asyncio.run(run())


def test_past_the_hard_ttl_a_sign_answers_unlock_required_until_the_unlock_lands(engine, clock):
    async def run():
        key_id, public_key, material = await _created(engine)
        clock.advance(61 * MIN)  # past the key's and the data key's hard TTL
        assert engine.keys.lookup(key_id)[0] is State.INVALID
        engine.custody.gate.clear()  # the master key answers slowly
        with pytest.raises(UnlockPending):
            await engine.sign(key_id, b"\x03" * 32, material)
        with pytest.raises(UnlockPending):  # a second caller joins the same unlock
            await engine.sign(key_id, b"\x03" * 32, material)
        engine.custody.gate.set()
        await engine.keys.loading[key_id]
        assert engine.keys.lookup(key_id)[0] is State.WARM
        assert engine.custody.unwraps == 1
        assert engine.keys.stats.unlocks == 1
        assert _recovers(public_key, b"\x03" * 32, await engine.sign(key_id, b"\x03" * 32, material))

    asyncio.run(run())


def test_a_key_refresh_within_the_data_key_ttl_does_not_call_the_master_key(engine, clock):
    async def run():
        key_id, _, material = await _created(engine)
        clock.advance(17 * MIN)  # key INVALID, its data key still WARM
        await engine.sign(key_id, b"\x04" * 32, material)
        assert engine.custody.unwraps == 0
        clock.advance(40 * MIN)  # 57 min: the data key is COOL
        await engine.sign(key_id, b"\x04" * 32, material)
        await asyncio.gather(*engine.deks.loading.values())
        assert engine.custody.unwraps == 1 and engine.deks.stats.refreshes == 1

    asyncio.run(run())


def test_material_of_another_key_does_not_unlock(tmp_path, clock):
    engine = Engine(CountingCustody(tmp_path / "master-key.json"), unlock_budget=10.0)

    async def run():
        key_id, _, _ = await _created(engine)
        other_id, _, other_material = await _created(engine)
        engine.keys.entries.clear()
        engine.deks.entries.clear()
        with pytest.raises(UnwrapFailed):
            await engine.sign(key_id, b"\x05" * 32, other_material)

    asyncio.run(run())


def test_the_rng_self_check_refuses_a_constant_source():
    with pytest.raises(RngSelfCheckFailed):
        rng_self_check(lambda n: b"\x07" * n)
    rng_self_check()
