from services.matching.bootstrap import main

main()
