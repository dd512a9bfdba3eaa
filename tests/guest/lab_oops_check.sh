# Run inside the swaprace test box by tests/test_lab_vm.py on the lab-2010 kernel: make an oops fatal (so the
# guest stops at once and the runner reports the panic with the console), then run the swapcache-2010 scenario.
# SCENARIO_ARGS are stress options (duration, widener).
sysctl -q -w kernel.panic_on_oops=1
swaprace stress --json --scenario swapcache-2010 "$@" > /mnt/out/stress.json 2> /mnt/out/stress.err
echo "stress exited $?" >> /mnt/out/stress.err
