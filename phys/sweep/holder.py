"""An exclusive device (one physical instance, ``DeviceInfo.exclusive``) held by one Ray
actor, through which every point of a sweep queries it, one call at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["DeviceHolder", "holder_opener", "hold_exclusive"]


class DeviceHolder:
    """Holds one device; as a Ray actor (one call at a time) it serialises the queries
    of every point that uses the device. The device opens on first use.

    Args:
        device: The :class:`~phys.DeviceSpec` to open (with its options).
    """

    def __init__(self, device: Any) -> None:
        self.spec, self.device = device, None
        self.calls = 0

    def _open(self) -> Any:
        if self.device is None:
            self.device = self.spec.open()
        return self.device

    def info(self) -> Any:
        return self._open().info

    def query(self, x: Any) -> tuple[Any, float | None, float | None]:
        """The answer to ``x`` and the lab seconds and joules it took."""
        device = self._open()
        lab, joules = device.stats.lab_seconds or 0.0, device.stats.joules or 0.0
        y = device.query(x)
        self.calls += 1
        s = device.stats
        return (y, None if s.lab_seconds is None else s.lab_seconds - lab,
                None if s.joules is None else s.joules - joules)

    def reopen(self) -> None:
        if self.device is None:
            self._open()
        else:
            self.device.reopen()

    def stats(self) -> dict[str, Any]:
        return {"calls": self.calls, **(self.device.stats.as_dict() if self.device else {})}

    def close(self) -> None:
        if self.device is not None:
            self.device.close()


def _actor_device_class() -> type:
    from phys.device import Device

    class ActorDevice(Device):
        """A device held by a :class:`DeviceHolder` actor; queries are Ray calls."""

        def __init__(self, holder: Any, name: str) -> None:
            import ray

            super().__init__()
            self.holder, self.name = holder, name
            self._cost: tuple[float | None, float | None] = (None, None)
            self.info = ray.get(holder.info.remote())

        def _call(self, method: Any, *args: Any) -> Any:
            import ray

            from phys.device import DeviceUnavailable

            try:
                return ray.get(method.remote(*args))
            except ray.exceptions.RayTaskError as err:
                cause = getattr(err, "cause", None)
                if isinstance(cause, DeviceUnavailable):
                    raise DeviceUnavailable(str(cause)) from None
                raise
            except ray.exceptions.RayActorError as err:
                raise DeviceUnavailable(f"{self.name}: the actor holding the device "
                                        f"died: {err}") from None

        def _query(self, x: Any) -> Any:
            y, lab, joules = self._call(self.holder.query, x)
            self._cost = (lab, joules)
            return y

        def _lab_cost(self, n_samples: int) -> tuple[float | None, float | None]:
            return self._cost

        def reopen(self) -> None:
            self._call(self.holder.reopen)

    return ActorDevice


def holder_opener(holders: Mapping[str, Any]) -> Callable[..., Any]:
    """A layer opener (see :func:`phys.experiment.build`) that answers a device held in
    ``holders`` (name -> :class:`DeviceHolder` actor) through its actor."""
    from phys.experiment import open_layer_device

    actor_device = _actor_device_class()

    def opener(device: Any, n_in: int, n_out: int, seed: int) -> Any:
        if device.name in holders:
            return actor_device(holders[device.name], device.name)
        return open_layer_device(device, n_in, n_out, seed)

    return opener


def hold_exclusive(ray: Any, devices: Iterable[Any], say: Callable[[str], None]
                   ) -> dict[str, Any]:
    """One :class:`DeviceHolder` actor per distinct device name in ``devices``, kept only
    for those whose info says ``exclusive``: each is opened once, in its actor, to read
    it. The others' actors are released (their points open their own devices, with
    whatever options each point gives).

    Raises:
        ValueError: points give one exclusive device different options.
    """
    by_name: dict[str, list[Any]] = {}
    for device in devices:
        by_name.setdefault(device.name, []).append(device)
    actor = ray.remote(num_cpus=0, max_concurrency=1)(DeviceHolder)
    holders = {}
    for name, specs in by_name.items():
        holder = actor.remote(specs[0])
        if not ray.get(holder.info.remote()).exclusive:
            ray.get(holder.close.remote())
            ray.kill(holder)
            say(f"device {name}: not exclusive, each point opens its own")
            continue
        holders[name] = holder
        if any(spec.options != specs[0].options for spec in specs):
            for held in holders.values():
                ray.kill(held)
            raise ValueError(f"points use device {name} with different device_options; "
                             f"one exclusive device has one set")
        say(f"device {name}: exclusive, held by one Ray actor, its queries one at a time")
    return holders
