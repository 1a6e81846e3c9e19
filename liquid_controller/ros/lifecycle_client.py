"""Drive a lifecycle node through its standard services (what `ros2 lifecycle set` does).

Used by `liquid-controller bringup` and the demo to bring the controller to `active` without the
launch packages, and by tests.
"""
from __future__ import annotations

import time

import rclpy
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState

TRANSITIONS = {
    'configure': Transition.TRANSITION_CONFIGURE,
    'activate': Transition.TRANSITION_ACTIVATE,
    'deactivate': Transition.TRANSITION_DEACTIVATE,
    'cleanup': Transition.TRANSITION_CLEANUP,
    'shutdown': Transition.TRANSITION_UNCONFIGURED_SHUTDOWN,
}


class LifecycleError(RuntimeError):
    """A transition was refused or a lifecycle service did not answer in time."""


class LifecycleClient:
    """Client of ``<target>/change_state`` and ``<target>/get_state`` on a helper node.

    ``executor``: an executor that spins ``node`` (the calls wait on futures with it).
    ``check``: optional callable run about every 0.1 s while waiting (for services, for an answer); it
    raises to abort the wait, e.g. ``Bringup.check_alive`` when the target's process has exited, so a
    node that died at start-up is reported at once instead of after the whole timeout.
    ``explain``: optional callable returning the node's own account of a refused transition (its
    logged error), added to the LifecycleError.
    """

    def __init__(self, node, target, executor, check=None, explain=None):
        target = target.rstrip('/')
        self.node, self.target, self.executor = node, target, executor
        self.check, self.explain = check, explain
        self._change = node.create_client(ChangeState, f'{target}/change_state')
        self._get = node.create_client(GetState, f'{target}/get_state')

    def _check(self):
        if self.check is not None:
            self.check()

    def wait_for_services(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        for client in (self._change, self._get):
            while not client.wait_for_service(timeout_sec=0.1):
                self._check()
                if time.monotonic() > deadline:
                    raise LifecycleError(f'{self.target}: lifecycle services not available after '
                                         f'{timeout:.0f} s (is the node running?)')
                self.executor.spin_once(timeout_sec=0.0)

    def _call(self, client, request, timeout, attempt_timeout=2.0):
        """Call a service, re-sending the request when no answer came within ``attempt_timeout``:
        right after discovery a DDS service may drop the first response (its response writer has not
        matched the client's reader yet)."""
        deadline = time.monotonic() + timeout
        while True:
            future = client.call_async(request)
            attempt_end = min(deadline, time.monotonic() + attempt_timeout)
            last_check = time.monotonic()
            while not future.done() and time.monotonic() < attempt_end:
                self.executor.spin_once(timeout_sec=0.02)
                if time.monotonic() - last_check > 0.1:
                    last_check = time.monotonic()
                    self._check()
            if future.done():
                return future.result()
            client.remove_pending_request(future)
            if time.monotonic() >= deadline:
                raise LifecycleError(f'{self.target}: no answer from {client.srv_name} in {timeout} s')

    def get_state(self, timeout=10.0):
        """Current state label ('unconfigured', 'inactive', 'active', 'finalized', ...)."""
        return self._call(self._get, GetState.Request(), timeout).current_state.label

    def change_state(self, transition, timeout=60.0):
        """Request ``transition`` ('configure', 'activate', ...); raises LifecycleError when refused.

        Sent once and awaited for up to ``timeout`` (a transition may take long, e.g. loading a
        model); a transition is not re-sent blindly because it is not idempotent.
        """
        request = ChangeState.Request()
        request.transition.id = TRANSITIONS[transition]
        response = self._call(self._change, request, timeout, attempt_timeout=timeout)
        if not response.success:
            self._check()  # a node that crashed in the transition: report the crash
            cause = self.explain() if self.explain is not None else ''
            cause = f': {cause}' if cause else '; see the node log for the reason'
            raise LifecycleError(f'{self.target}: transition {transition!r} failed (state now '
                                 f'{self.get_state()!r}){cause}')

    def bring_up(self, timeout=60.0):
        """unconfigured -> inactive -> active (skips steps already done)."""
        self.wait_for_services(timeout)
        state = self.get_state()
        if state == 'unconfigured':
            self.change_state('configure', timeout)
            state = self.get_state()
        if state == 'inactive':
            self.change_state('activate', timeout)
        state = self.get_state()
        if state != 'active':
            raise LifecycleError(f'{self.target}: ended in state {state!r}, expected active')
        return state


__all__ = ['LifecycleClient', 'LifecycleError', 'TRANSITIONS', 'State']


def bring_up(target, timeout=60.0, check=None, explain=None):
    """Convenience: create a helper node, bring ``target`` (e.g. '/controller') to active, clean up.
    Initialises (and then shuts down) rclpy only when it is not initialised already, without rclpy's
    signal handlers: Ctrl-C stays the caller's (KeyboardInterrupt, or its own handler seen by ``check``)
    instead of invalidating the context under a pending wait ("rcl node's context is invalid").
    ``check`` / ``explain``: see :class:`LifecycleClient`."""
    from rclpy.signals import SignalHandlerOptions
    own = not rclpy.ok()
    if own:
        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node('liquid_controller_lifecycle_client')
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    try:
        return LifecycleClient(node, target, executor, check, explain).bring_up(timeout)
    finally:
        executor.remove_node(node)
        node.destroy_node()
        if own:
            rclpy.shutdown()
