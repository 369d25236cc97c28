from jobsub.cli import main

main()
