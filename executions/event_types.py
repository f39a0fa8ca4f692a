"""Step Functions' history event types: the one list, and the groups of them
that the dashboard reads (failures, the end of an execution, a task's failed
attempt). Every module that asks "what kind of event is this?" asks here.

The list is the 62 values of `HistoryEventType` in the Step Functions service
model, each with the `*EventDetails` member AWS sends with it. botocore's
model has the names but not which member goes with which type, so the mapping
is written out, and tests/history/test_history_model.py holds it to the model both
ways (every type of the model here, every member named here in the model).
The groups are derived from the list by rule, never listed by hand.

Imports nothing: models, history, sync and views may all import it.
"""

from __future__ import annotations

# The `*EventDetails` member AWS sends with each event type; "" for the types
# that carry none. From the Step Functions service model (HistoryEvent).
DETAILS_KEY: dict[str, str] = {
    "ActivityFailed": "activityFailedEventDetails",
    "ActivityScheduled": "activityScheduledEventDetails",
    "ActivityScheduleFailed": "activityScheduleFailedEventDetails",
    "ActivityStarted": "activityStartedEventDetails",
    "ActivitySucceeded": "activitySucceededEventDetails",
    "ActivityTimedOut": "activityTimedOutEventDetails",
    "ChoiceStateEntered": "stateEnteredEventDetails",
    "ChoiceStateExited": "stateExitedEventDetails",
    "ExecutionAborted": "executionAbortedEventDetails",
    "ExecutionFailed": "executionFailedEventDetails",
    "ExecutionStarted": "executionStartedEventDetails",
    "ExecutionSucceeded": "executionSucceededEventDetails",
    "ExecutionTimedOut": "executionTimedOutEventDetails",
    "FailStateEntered": "stateEnteredEventDetails",
    "LambdaFunctionFailed": "lambdaFunctionFailedEventDetails",
    "LambdaFunctionScheduled": "lambdaFunctionScheduledEventDetails",
    "LambdaFunctionScheduleFailed": "lambdaFunctionScheduleFailedEventDetails",
    "LambdaFunctionStarted": "",
    "LambdaFunctionStartFailed": "lambdaFunctionStartFailedEventDetails",
    "LambdaFunctionSucceeded": "lambdaFunctionSucceededEventDetails",
    "LambdaFunctionTimedOut": "lambdaFunctionTimedOutEventDetails",
    "MapIterationAborted": "mapIterationAbortedEventDetails",
    "MapIterationFailed": "mapIterationFailedEventDetails",
    "MapIterationStarted": "mapIterationStartedEventDetails",
    "MapIterationSucceeded": "mapIterationSucceededEventDetails",
    "MapStateAborted": "",
    "MapStateEntered": "stateEnteredEventDetails",
    "MapStateExited": "stateExitedEventDetails",
    "MapStateFailed": "",
    "MapStateStarted": "mapStateStartedEventDetails",
    "MapStateSucceeded": "",
    "ParallelStateAborted": "",
    "ParallelStateEntered": "stateEnteredEventDetails",
    "ParallelStateExited": "stateExitedEventDetails",
    "ParallelStateFailed": "",
    "ParallelStateStarted": "",
    "ParallelStateSucceeded": "",
    "PassStateEntered": "stateEnteredEventDetails",
    "PassStateExited": "stateExitedEventDetails",
    "SucceedStateEntered": "stateEnteredEventDetails",
    "SucceedStateExited": "stateExitedEventDetails",
    "TaskFailed": "taskFailedEventDetails",
    "TaskScheduled": "taskScheduledEventDetails",
    "TaskStarted": "taskStartedEventDetails",
    "TaskStartFailed": "taskStartFailedEventDetails",
    "TaskStateAborted": "",
    "TaskStateEntered": "stateEnteredEventDetails",
    "TaskStateExited": "stateExitedEventDetails",
    "TaskSubmitFailed": "taskSubmitFailedEventDetails",
    "TaskSubmitted": "taskSubmittedEventDetails",
    "TaskSucceeded": "taskSucceededEventDetails",
    "TaskTimedOut": "taskTimedOutEventDetails",
    "WaitStateAborted": "",
    "WaitStateEntered": "stateEnteredEventDetails",
    "WaitStateExited": "stateExitedEventDetails",
    "MapRunAborted": "",
    "MapRunFailed": "mapRunFailedEventDetails",
    "MapRunStarted": "mapRunStartedEventDetails",
    "MapRunSucceeded": "",
    "ExecutionRedriven": "executionRedrivenEventDetails",
    "MapRunRedriven": "mapRunRedrivenEventDetails",
    "EvaluationFailed": "evaluationFailedEventDetails",
}
EVENT_TYPES: tuple[str, ...] = tuple(DETAILS_KEY)

FAILURE_ENDINGS = ("Failed", "TimedOut", "Aborted")

# Something went wrong here: red in the table, and the "failures only" filter.
FAILURE_TYPES: frozenset[str] = frozenset(
    t for t in EVENT_TYPES if t.endswith(FAILURE_ENDINGS) or t == "FailStateEntered"
)

# The execution has ended: nothing follows one of these.
TERMINAL_TYPES: frozenset[str] = frozenset(
    t
    for t in EVENT_TYPES
    if t.startswith("Execution") and t.endswith((*FAILURE_ENDINGS, "Succeeded"))
)

# The events of one attempt of a Task state: a service integration, a Lambda
# function or an activity.
_ATTEMPT = ("Task", "LambdaFunction", "Activity")
TASK_SCHEDULED_TYPES: frozenset[str] = frozenset(
    t for t in EVENT_TYPES if t.startswith(_ATTEMPT) and t.endswith("Scheduled")
)
# What a worker or service says while it works: the last sign of life.
TASK_ALIVE_TYPES: frozenset[str] = frozenset(
    t for t in EVENT_TYPES if t.startswith(_ATTEMPT) and t.endswith(("Started", "Submitted"))
)
TASK_SUCCEEDED_TYPES: frozenset[str] = frozenset(
    t for t in EVENT_TYPES if t.startswith(_ATTEMPT) and t.endswith("Succeeded")
)
# The attempt failed: what a Retry acts on. Not the state being aborted
# (TaskStateAborted).
TASK_FAILURE_TYPES: frozenset[str] = frozenset(
    t for t in FAILURE_TYPES if t.startswith(_ATTEMPT) and not t.endswith("Aborted")
)

# A Distributed Map run ended (the parent's history says so).
MAP_RUN_END_TYPES: frozenset[str] = frozenset(
    t for t in EVENT_TYPES if t.startswith("MapRun") and t.endswith((*FAILURE_ENDINGS, "Succeeded"))
)

# One iteration of an inline Map state started or ended.
ITERATION_TYPES: frozenset[str] = frozenset(t for t in EVENT_TYPES if t.startswith("MapIteration"))
