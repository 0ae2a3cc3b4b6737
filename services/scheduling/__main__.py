from services.scheduling.bootstrap import main

main()
